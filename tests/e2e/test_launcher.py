"""`make up`'s launcher, run as a user runs it: start, serve, SIGTERM, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from modelgate_shared.stack import free_port
from modelgate_shared.testing import training_data_source


def test_up_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    gateway_port = free_port()
    env = {
        **os.environ,
        "MODELGATE_STATE_DIR": str(tmp_path / "state"),
        "MODELGATE_GATEWAY_PORT": str(gateway_port),
        "MODELGATE_AUTH_PORT": str(free_port()),
        "MODELGATE_INFERENCE_PORT": str(free_port()),
        "MODELGATE_TRAINING_DATA": training_data_source(),
        "MODELGATE_AUTH_BCRYPT_ROUNDS": "4",
    }
    # The launcher's own database choice is under test here, not an inherited one.
    env.pop("MODELGATE_DATABASE_URL", None)
    env.pop("MODELGATE_REDIS_URL", None)
    log = (tmp_path / "up.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelgate_shared.stack", "up"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while b"modelgate is up" not in (tmp_path / "up.log").read_bytes():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "launcher did not come up in time"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{gateway_port}/healthz").status_code == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # three services and redis
        postmaster = tmp_path / "state" / "postgres" / "postmaster.pid"
        assert postmaster.exists()
        postgres_pid = int(postmaster.read_text().split()[0])

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = (tmp_path / "up.log").read_text()
    assert "modelgate: stopped" in output
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    assert not psutil.pid_exists(postgres_pid) or psutil.Process(postgres_pid).status() == psutil.STATUS_ZOMBIE
    # State persists for the next run: keys, model and database are kept.
    assert any((tmp_path / "state" / "keys" / "private").iterdir())
    assert (tmp_path / "state" / "postgres" / "PG_VERSION").exists()


def test_up_fails_clearly_on_bad_training_data(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MODELGATE_STATE_DIR": str(tmp_path / "state"),
        "MODELGATE_GATEWAY_PORT": str(free_port()),
        "MODELGATE_AUTH_PORT": str(free_port()),
        "MODELGATE_INFERENCE_PORT": str(free_port()),
        "MODELGATE_TRAINING_DATA": str(tmp_path / "missing.csv"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "modelgate_shared.stack", "up"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "training the default model failed" in result.stderr
    assert "missing.csv" in result.stderr
