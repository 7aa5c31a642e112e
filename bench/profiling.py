"""Sampling profiles of the servers while wrk loads them (py-spy), summarised per function.

py-spy reads the target's memory from outside (``--nonblocking``: it never pauses it) and
runs on the load CPU, so the servers' CPU is left to the servers.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

SAMPLE_RATE = 250
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE_NO = re.compile(r":\d+\)$")


class ProfilerError(RuntimeError):
    pass


def ensure_py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    if found := shutil.which("py-spy"):
        return found
    print("bench: installing py-spy into this environment ...", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], capture_output=True, text=True
    )
    if result.returncode != 0 or not local.exists():
        raise ProfilerError(f"could not install py-spy (pip install py-spy): {result.stderr.strip()[-1000:]}")
    return str(local)


def _function(frame: str) -> str:
    """'handle (gateway_service/proxy.py:42)' -> 'handle (gateway_service/proxy.py)': group by function."""
    return _FRAME_LINE_NO.sub(")", frame.strip())


def summarize(folded: str, top: int = 25) -> str:
    """Inclusive and self share of samples per function, from py-spy's folded ("raw") output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        count = int(match["count"])
        frames = [_function(f) for f in match["stack"].split(";") if f.strip()]
        if not frames:
            continue
        total += count
        for name in set(frames[1:]):  # frames[0] is the process/thread label
            inclusive[name] += count
        own[frames[-1]] += count
    if total == 0:
        return "no samples (the process was idle or py-spy could not read it)\n"
    out = [f"{total} samples at {SAMPLE_RATE} Hz (busy threads only)", "", "inclusive%  function"]
    out += [f"{100 * n / total:9.1f}  {name}" for name, n in inclusive.most_common(top)]
    out += ["", "self%      function"]
    out += [f"{100 * n / total:9.1f}  {name}" for name, n in own.most_common(top)]
    return "\n".join(out) + "\n"


class Profiler:
    def __init__(self, out_dir: Path, cpu: int | None) -> None:
        self.binary = ensure_py_spy()
        self.out_dir = out_dir
        self.cpu = cpu
        out_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def recording(self, tag: str, pids: Mapping[str, int], seconds: float) -> Iterator[None]:
        """Profile every process in ``pids`` for ``seconds`` while the block runs the load."""
        procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for name, pid in pids.items():
            folded = self.out_dir / f"{tag}-{name}.folded"
            args = [
                self.binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", str(folded), "--nonblocking",
            ]  # fmt: skip
            if self.cpu is not None:
                args = ["taskset", "-c", str(self.cpu), *args]
            procs[name] = (
                subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                folded,
            )
        try:
            yield
        finally:
            for name, (proc, folded) in procs.items():
                try:
                    _, err = proc.communicate(timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                text = folded.read_text() if folded.exists() else ""
                summary = summarize(text) if text else f"py-spy produced nothing: {err.decode(errors='replace')}\n"
                (self.out_dir / f"{tag}-{name}.txt").write_text(summary)
