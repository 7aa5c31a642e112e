"""The gateway's upstream connection pool against httpcore's, on the same network backend.

``python -m bench.transport_pool``: one uvicorn process (pinned to one CPU) answers every
request with a ~100-byte JSON body, the size of a one-row V1 predict answer. This process
(pinned to another CPU) sends it the same POST through two httpx transports that differ
only in the pool:

- ``own``: :class:`gateway_service.transport.UpstreamTransport`, the gateway's transport
  (its stack-of-idle-connections pool over :class:`AsyncioBackend`);
- ``httpcore``: the same class with its pool replaced by
  ``httpcore.AsyncConnectionPool(network_backend=AsyncioBackend())``, so the request and
  response wrapping, the error mapping, the backend and h11 are the same code.

Each request is driven the way the proxy drives it: an ``httpx.Request`` with the upstream
timeouts as extensions, ``transport.handle_async_request``, the body read with
``aiter_raw`` and the response closed. A run is ``--warmup`` seconds (discarded) then
``--duration`` seconds measured, with ``c`` workers in a closed loop; ``c/N`` first opens
``N`` connections with a burst of ``N`` concurrent requests and then loads at ``c``, which
is what the gateway's pool holds after a spike (idle connections live 30 s). Runs are
interleaved (round after round, A/B order alternating) so drift and other load on the
machine hit both transports alike.

Reported per run: this process's CPU time per request (``time.process_time``: what the
pool costs), requests/s, how busy the server was (its own CPU time from /proc), and how
much of the client CPU *other* processes used during the run (/proc/stat busy minus ours):
the noise indicator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpcore
import httpx
import psutil
from modelgate_shared.stack import free_port

from .cpu_usage import core_busy_seconds
from .machine import cpu_model
from .pinning import pinned
from .pinning import plan as pinning_plan

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("own", "httpcore")
# A one-row V1 predict answer, as inference sends it.
ANSWER = b'{"model":"diabetes","version":"1","predictions":[{"label":1,"probabilities":{"0":0.2717,"1":0.7283}}]}'
REQUEST_BODY = b'{"instances":[{"preg":6,"plas":148,"pres":72,"skin":35,"test":0,"mass":33.6,"pedi":0.627,"age":50}]}'
# What the proxy forwards for a bearer-token predict call (a token of the gateway's size).
REQUEST_HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(REQUEST_BODY)).encode()),
    (b"authorization", b"Bearer " + b"x" * 600),
    (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"http"),
    (b"x-forwarded-host", b"127.0.0.1:8000"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
]
# The gateway's defaults (settings.upstream_*): 200 connections kept alive 30 s.
MAX_CONNECTIONS = 200
TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


# --- the upstream -------------------------------------------------------------------------


async def app(
    scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    """The upstream: a bare ASGI app (no framework) so the server stays cheap and equal for both."""
    assert scope["type"] == "http"  # uvicorn runs it with --lifespan off
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


@contextlib.contextmanager
def upstream(cpu: int | None) -> Iterator[tuple[str, int]]:
    """Yield (url, pid) of a uvicorn process serving :func:`app`, pinned to ``cpu``."""
    port = free_port()
    args = [
        sys.executable, "-m", "uvicorn", "bench.transport_pool:app", "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with pinned(cpu):
        proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"upstream exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(url, content=b"{}", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("upstream not up within 30 s")
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the two transports ---------------------------------------------------------------------


def make_transport(variant: str) -> httpx.AsyncBaseTransport:
    """The gateway's transport as ``upstreams._upstream`` builds it, with its own pool or httpcore's."""
    from gateway_service.transport import AsyncioBackend, UpstreamTransport

    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS, keepalive_expiry=30
    )
    transport = UpstreamTransport(limits)
    if variant == "httpcore":
        transport._pool = httpcore.AsyncConnectionPool(  # type: ignore[assignment]
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
    elif variant != "own":
        raise ValueError(f"unknown variant {variant!r}")
    return transport


# --- one run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A load shape: ``concurrency`` closed-loop workers after a burst that opened ``opened`` connections."""

    concurrency: int
    opened: int

    @property
    def label(self) -> str:
        return str(self.concurrency) if self.opened <= self.concurrency else f"{self.concurrency}/{self.opened}"

    @classmethod
    def parse(cls, text: str) -> Cell:
        c, _, n = text.partition("/")
        concurrency = int(c)
        opened = int(n) if n else concurrency
        if concurrency < 1 or opened < concurrency or opened > MAX_CONNECTIONS:
            raise ValueError(f"bad load {text!r}: need 1 <= c <= N <= {MAX_CONNECTIONS} in c or c/N")
        return cls(concurrency, opened)


@dataclass(frozen=True)
class Run:
    variant: str
    load: str
    round: int
    requests: int
    seconds: float
    client_cpu_s: float
    server_cpu_s: float
    client_core_busy_s: float | None
    errors: int

    @property
    def cpu_us_per_request(self) -> float:
        return self.client_cpu_s / self.requests * 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def server_busy(self) -> float:
        return self.server_cpu_s / self.seconds

    @property
    def other_load(self) -> float | None:
        """Share of the client's CPU that other processes used during the run."""
        if self.client_core_busy_s is None:
            return None
        return max(0.0, self.client_core_busy_s - self.client_cpu_s) / self.seconds


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _measure(
    variant: str, url: str, cell: Cell, warmup: float, duration: float, server: psutil.Process, cpu: int | None
) -> tuple[int, float, float, float, float | None, int]:
    transport = make_transport(variant)
    extensions = {"timeout": TIMEOUT.as_dict()}
    done = 0
    errors = 0
    stop = False

    async def one() -> None:
        nonlocal done, errors
        request = httpx.Request("POST", url + "/v1/models/diabetes/predict", headers=REQUEST_HEADERS,
                                content=REQUEST_BODY, extensions=dict(extensions))  # fmt: skip
        size = 0
        try:
            response = await transport.handle_async_request(request)
            async for chunk in response.aiter_raw():
                size += len(chunk)
            await response.aclose()
        except httpx.HTTPError:
            errors += 1  # e.g. a keep-alive connection the upstream closed (uvicorn: after 5 s idle)
            return
        if response.status_code == 200 and size == len(ANSWER):
            done += 1
        else:
            errors += 1

    def mark() -> tuple[int, int, float, float, float | None, float]:
        return done, errors, time.process_time(), _cpu_seconds(server), core_busy_seconds(cpu), time.perf_counter()

    async def worker() -> None:
        while not stop:
            await one()

    try:
        await asyncio.gather(*(one() for _ in range(cell.opened)))  # open the connections
        workers = [asyncio.ensure_future(worker()) for _ in range(cell.concurrency)]
        await asyncio.sleep(warmup)
        before = mark()
        await asyncio.sleep(duration)
        after = mark()
        stop = True
        await asyncio.gather(*workers)
    finally:
        await transport.aclose()
    n0, e0, cpu0, srv0, core0, t0 = before
    n1, e1, cpu1, srv1, core1, t1 = after
    core = None if core0 is None or core1 is None else core1 - core0
    return n1 - n0, t1 - t0, cpu1 - cpu0, srv1 - srv0, core, e1 - e0


def run_once(
    variant: str, url: str, cell: Cell, *, warmup: float, duration: float, server_pid: int, cpu: int | None,
    loop: str, round_no: int,
) -> Run:  # fmt: skip
    runner: Callable[[Any], Any] = asyncio.run
    if loop == "uvloop":
        import uvloop

        runner = uvloop.run
    requests, seconds, client, srv, core, errors = runner(
        _measure(variant, url, cell, warmup, duration, psutil.Process(server_pid), cpu)
    )
    return Run(variant, cell.label, round_no, requests, seconds, client, srv, core, errors)


def schedule(cells: Sequence[Cell], rounds: int) -> list[tuple[int, Cell, str]]:
    """Every (round, load, variant), interleaved: each load runs A then B in one round, B then A
    in the next, and neighbouring loads start with opposite variants."""
    order: list[tuple[int, Cell, str]] = []
    for r in range(rounds):
        for i, cell in enumerate(cells):
            variants = VARIANTS[::-1] if (r + i) % 2 else VARIANTS
            order += [(r, cell, v) for v in variants]
    return order


# --- summary --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    load: str
    variant: str
    runs: int
    cpu_us_min: float
    cpu_us_median: float
    cpu_us_max: float
    rps_min: float
    rps_median: float
    rps_max: float
    server_busy_median: float
    other_load_median: float | None
    other_load_max: float | None
    errors: int


def summarise(runs: Sequence[Run]) -> list[Summary]:
    out = []
    for load in dict.fromkeys(r.load for r in runs):
        for variant in VARIANTS:
            mine = [r for r in runs if r.load == load and r.variant == variant]
            if not mine:
                continue
            cpu = [r.cpu_us_per_request for r in mine]
            rps = [r.rps for r in mine]
            other = [r.other_load for r in mine if r.other_load is not None]
            out.append(
                Summary(
                    load,
                    variant,
                    len(mine),
                    min(cpu),
                    statistics.median(cpu),
                    max(cpu),
                    min(rps),
                    statistics.median(rps),
                    max(rps),
                    statistics.median(r.server_busy for r in mine),
                    statistics.median(other) if other else None,
                    max(other) if other else None,
                    sum(r.errors for r in mine),
                )
            )
    return out


def paired_ratios(runs: Sequence[Run]) -> dict[str, list[float]]:
    """httpcore's CPU per request over ours, per round (the two runs of a round are adjacent)."""
    ratios: dict[str, list[float]] = {}
    by_key = {(r.load, r.round, r.variant): r for r in runs}
    for (load, round_no, variant), run in by_key.items():
        if variant != "httpcore" or (load, round_no, "own") not in by_key:
            continue
        ratios.setdefault(load, []).append(run.cpu_us_per_request / by_key[(load, round_no, "own")].cpu_us_per_request)
    return ratios


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


def table(summaries: Sequence[Summary], ratios: dict[str, list[float]]) -> str:
    lines = [
        "| c (conns) | pool | runs | client CPU us/req min / median / max | req/s min / median / max "
        "| httpcore/own CPU, median of rounds [min-max] | server busy | other load on client CPU median / max |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        ratio = ""
        if s.variant == "httpcore" and ratios.get(s.load):
            r = ratios[s.load]
            ratio = f"{statistics.median(r):.3f}x [{min(r):.3f}-{max(r):.3f}]"
        lines.append(
            f"| {s.load} | {s.variant} | {s.runs} | {s.cpu_us_min:.1f} / {s.cpu_us_median:.1f} / {s.cpu_us_max:.1f} "
            f"| {s.rps_min:,.0f} / {s.rps_median:,.0f} / {s.rps_max:,.0f} | {ratio} | {_pct(s.server_busy_median)} "
            f"| {_pct(s.other_load_median)} / {_pct(s.other_load_max)} |"
        )
    return "\n".join(lines)


def _times(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def comparison(summaries: Sequence[Summary], ratios: dict[str, list[float]]) -> str:
    """One row per load, both pools side by side (the table in bench/README.md)."""
    lines = [
        "| c (connections) | own pool: client CPU us/req, min / median | httpcore pool: min / median "
        "| httpcore / own, median of rounds [range] | req/s median, own / httpcore "
        "| other load on client CPU, medians / max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    by_key = {(s.load, s.variant): s for s in summaries}
    for load in dict.fromkeys(s.load for s in summaries):
        own, core, r = by_key.get((load, "own")), by_key.get((load, "httpcore")), ratios.get(load)
        if own is None or core is None or not r:
            continue
        medians = sorted({_pct(own.other_load_median), _pct(core.other_load_median)} - {""}, key=lambda p: int(p[:-1]))
        peaks = [x for x in (own.other_load_max, core.other_load_max) if x is not None]
        lines.append(
            f"| {load} | {own.cpu_us_min:,.0f} / {own.cpu_us_median:,.0f} "
            f"| {core.cpu_us_min:,.0f} / {core.cpu_us_median:,.0f} "
            f"| {_times(statistics.median(r))}x [{_times(min(r))}-{_times(max(r))}] "
            f"| {own.rps_median:,.0f} / {core.rps_median:,.0f} "
            f"| {'-'.join(medians)} / {_pct(max(peaks)) if peaks else ''} |"
        )
    return "\n".join(lines)


def environment(loop: str, server_cpu: int | None, client_cpu: int | None) -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for name in ("httpx", "httpcore", "h11", "uvicorn", "uvloop", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "loop": loop,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_pool", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="1,16,64,200,16/200", help="c or c/N, comma-separated (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per run (default 2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds discarded per run (default 0.5)")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="client loop (uvicorn's: uvloop)"
    )
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    args = parser.parse_args(argv)
    cells = [Cell.parse(part.strip()) for part in args.loads.split(",") if part.strip()]

    pins = pinning_plan()
    env = environment(args.loop, pins.server_cpu, pins.load_cpu)
    print(f"# {env['cpu_model']}, {env['cores']} cores; server on CPU {pins.server_cpu}, client on CPU "
          f"{pins.load_cpu}; loop {args.loop}; load average {env['load_average']}", flush=True)  # fmt: skip
    runs: list[Run] = []
    with upstream(pins.server_cpu) as (url, server_pid), pinned(pins.load_cpu):
        for round_no, cell, variant in schedule(cells, args.rounds):
            run = run_once(
                variant, url, cell, warmup=args.warmup, duration=args.duration, server_pid=server_pid,
                cpu=pins.load_cpu, loop=args.loop, round_no=round_no,
            )  # fmt: skip
            runs.append(run)
            print(f"round {round_no} c={cell.label:>7} {variant:>8}: {run.cpu_us_per_request:7.1f} us/req "
                  f"{run.rps:9,.0f} req/s  server {_pct(run.server_busy):>4}  other {_pct(run.other_load):>4}",
                  flush=True)  # fmt: skip
    env["load_average_end"] = os.getloadavg()
    summaries = summarise(runs)
    ratios = paired_ratios(runs)
    print()
    print(table(summaries, ratios))
    print()
    print(comparison(summaries, ratios))
    print(f"\nload average at end {env['load_average_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "environment": env,
            "settings": vars(args) | {"json": str(args.json)},
            "runs": [asdict(r) | {"cpu_us_per_request": r.cpu_us_per_request, "rps": r.rps} for r in runs],
            "summary": [asdict(s) for s in summaries],
            "httpcore_over_own_cpu": ratios,
        }
        args.json.write_text(json.dumps(record, indent=2))
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
