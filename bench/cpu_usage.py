"""CPU time each server-side process spent during a run: where a request's cost goes.

Sampling profilers blur this when every server shares one CPU (a process preempted inside
send() looks busy), so the per-process totals come from the kernel's own accounting."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import psutil

Snapshot = dict[tuple[str, int], float]


class ProcessGroups:
    """Named groups of processes: each service, Redis, and Postgres with all its backends."""

    def __init__(self, roots: Mapping[str, int], postgres_marker: str | None = None) -> None:
        self.roots = dict(roots)
        self.postgres_marker = postgres_marker

    def _members(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {}
        for name, pid in self.roots.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                groups[name] = [proc, *proc.children(recursive=True)]
        if self.postgres_marker:
            postmasters = []
            for proc in psutil.process_iter(["name", "cmdline"]):
                with contextlib.suppress(psutil.Error):
                    cmdline = proc.info["cmdline"] or []
                    if proc.info["name"] == "postgres" and any(self.postgres_marker in p for p in cmdline):
                        postmasters.append(proc)
            members = []
            for proc in postmasters:
                with contextlib.suppress(psutil.Error):
                    members += [proc, *proc.children(recursive=True)]
            if members:
                groups["postgres"] = members
        return groups

    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        for name, procs in self._members().items():
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    out[(name, proc.pid)] = times.user + times.system
        return out


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per group between two snapshots (a process born in between counts in full)."""
    totals: dict[str, float] = {}
    for (name, pid), seconds in after.items():
        totals[name] = totals.get(name, 0.0) + max(0.0, seconds - before.get((name, pid), 0.0))
    return totals


def core_busy_seconds(cpu: int | None) -> float | None:
    """Busy time of one CPU by anyone (from /proc/stat): the servers' CPU time against this
    shows how much other work on the machine shared the pinned CPU."""
    if cpu is None:
        return None
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields and fields[0] == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return None
