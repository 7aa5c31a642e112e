"""Run the baseline app as its own uvicorn process, like the services are run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from modelgate_shared.stack import free_port

from .baseline_app import MODEL_DIR_ENV
from .pinning import pinned

REPO = Path(__file__).resolve().parents[1]


class BaselineError(RuntimeError):
    pass


@contextlib.contextmanager
def running(model_dir: Path, *, cpu: int | None, log_path: Path) -> Iterator[tuple[str, int]]:
    """Yield (url, pid) of a baseline server pinned to ``cpu``."""
    port = free_port()
    args = [
        sys.executable, "-m", "uvicorn", "bench.baseline_app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log, pinned(cpu):
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            env={**os.environ, MODEL_DIR_ENV: str(model_dir)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise BaselineError(f"baseline app exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{url}/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise BaselineError(f"baseline app not up within 60 s:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
