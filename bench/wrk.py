"""wrk, the load generator: installing it, running it pinned to a CPU, parsing its result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "request.lua"
JSON_MARKER = "BENCH_JSON "
# Long enough for a queue of 16 bcrypt logins on one CPU; wrk's 2 s default would count them as timeouts.
REQUEST_TIMEOUT = "60s"


class WrkError(RuntimeError):
    """wrk is missing, could not be installed, or produced no result."""


def ensure_wrk() -> str:
    """The wrk binary, installed from Debian's packages when missing."""
    if found := shutil.which("wrk"):
        return found
    if not shutil.which("apt-get"):
        raise WrkError("wrk is not installed and apt-get is not available: install wrk (https://github.com/wg/wrk)")
    if os.geteuid() != 0:
        raise WrkError("wrk is not installed; run `sudo apt-get install -y wrk` (installing needs root)")
    print("bench: wrk not found; installing it with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        result = subprocess.run(args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-2000:]
            raise WrkError(f"`{' '.join(args)}` failed (exit {result.returncode}); install wrk by hand:\n{detail}")
    if found := shutil.which("wrk"):
        return found
    raise WrkError("apt-get installed wrk but it is not on PATH")


def wrk_version(binary: str) -> str:
    """ "debian/4.1.0-3+b2" from wrk's banner (``wrk -v`` prints it and exits 1)."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True)
    words = (result.stdout or result.stderr).split()
    return words[1] if len(words) > 1 and words[0] == "wrk" else " ".join(words[:3]) or "unknown"


@dataclass(frozen=True)
class Load:
    """What one wrk run sends."""

    url: str
    method: str = "GET"
    body: bytes | None = None
    content_type: str | None = None
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "rps": round(self.rps, 2), "errors": self.errors}


def parse_output(stdout: str) -> WrkResult:
    """The result the Lua done() printed (latencies come in microseconds)."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(JSON_MARKER)), None)
    if line is None:
        raise WrkError(f"wrk printed no {JSON_MARKER.strip()} line:\n{stdout[-2000:]}")
    data = json.loads(line[len(JSON_MARKER) :])
    lat = data["latency_us"]
    errs = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        mean_ms=float(lat["mean"]) / 1000,
        max_ms=lat["max"] / 1000,
        non2xx=int(data["non2xx"]),
        # errors.status duplicates non2xx (status > 399); the rest are socket-level failures.
        socket_errors=sum(int(errs[k]) for k in ("connect", "read", "write", "timeout")),
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
    )


def command(binary: str, url: str, *, connections: int, duration_s: float, cpu: int | None) -> list[str]:
    # One wrk thread: the load generator owns a single CPU, and epoll serves 16 connections fine.
    args = [
        binary, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        "--latency", "--timeout", REQUEST_TIMEOUT, "-s", str(LUA_SCRIPT), url,
    ]  # fmt: skip
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + args


class WrkRun:
    """One wrk process; several can run at once (the login storm)."""

    def __init__(self, binary: str, load: Load, *, connections: int, duration_s: float, cpu: int | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-wrk-")
        env = {**os.environ, "BENCH_METHOD": load.method}
        if load.body is not None:
            body_path = Path(self._tmp.name) / "body"
            body_path.write_bytes(load.body)
            env["BENCH_BODY_FILE"] = str(body_path)
        if load.content_type:
            env["BENCH_CONTENT_TYPE"] = load.content_type
        if load.token:
            env["BENCH_TOKEN"] = load.token
        if load.headers:
            env["BENCH_HEADERS"] = "\n".join(f"{name}: {value}" for name, value in load.headers)
        self.args = command(binary, load.url, connections=connections, duration_s=duration_s, cpu=cpu)
        self._proc = subprocess.Popen(
            self.args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.output = ""

    def wait(self) -> WrkResult:
        try:
            stdout, stderr = self._proc.communicate()
        finally:
            self._tmp.cleanup()
        self.output = stdout
        if self._proc.returncode != 0:
            raise WrkError(f"wrk exited with {self._proc.returncode}: {stderr.strip() or stdout.strip()}")
        return parse_output(stdout)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._tmp.cleanup()
