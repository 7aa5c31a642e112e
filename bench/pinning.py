"""CPU pinning: every server process on one CPU, the load generator on another.

Affinity is inherited across fork/exec, so pinning this process before it starts the
stack puts uvicorn, the embedded Postgres (and every backend it forks) and Redis on
the server CPU; the bench then moves itself to the load CPU for wrk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

SERVER_CPU = 0
LOAD_CPU = 1


@dataclass(frozen=True)
class Plan:
    server_cpu: int | None
    load_cpu: int | None

    @property
    def enabled(self) -> bool:
        return self.server_cpu is not None

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned (fewer than 2 CPUs available)"
        return (
            f"servers (auth, inference, gateway, baseline, Postgres, Redis) pinned to CPU {self.server_cpu} "
            f"with sched_setaffinity (inherited, like `taskset -c {self.server_cpu}`); "
            f"wrk runs under `taskset -c {self.load_cpu}`"
        )


def plan() -> Plan:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Plan(None, None)
    return Plan(cpus[SERVER_CPU], cpus[LOAD_CPU])


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Run the block (and everything it spawns) on ``cpu``; restore afterwards."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _related(root_pids: list[int], marker: str | None) -> dict[int, psutil.Process]:
    """The given processes, their descendants, and daemons whose command line names ``marker``
    (pg_ctl daemonises Postgres, so it is no longer our descendant)."""
    found: dict[int, psutil.Process] = {}
    for pid in root_pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            found[pid] = proc
            for child in proc.children(recursive=True):
                found[child.pid] = child
    for proc in psutil.process_iter(["cmdline"]) if marker else ():
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
    return found


def affinity_report(root_pids: list[int], marker: str | None = None) -> dict[str, list[int]]:
    """CPU affinity of every server-side process, keyed "name[pid]": the evidence that pinning held."""
    report: dict[str, list[int]] = {}
    for pid, proc in sorted(_related(root_pids, marker).items()):
        with contextlib.suppress(psutil.Error):
            report[f"{proc.name()}[{pid}]"] = sorted(proc.cpu_affinity())
    return report
