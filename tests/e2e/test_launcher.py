"""`make up`'s launcher, run as a user runs it: start, serve, SIGTERM, nothing left behind;
a service that dies is restarted; bad settings are named before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from modelgate_shared.stack import free_port
from modelgate_shared.testing import training_data_source

UP = [sys.executable, "-m", "modelgate_shared.stack", "up"]


def launcher_env(state: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MODELGATE_STATE_DIR": str(state),
        "MODELGATE_GATEWAY_PORT": str(free_port()),
        "MODELGATE_AUTH_PORT": str(free_port()),
        "MODELGATE_INFERENCE_PORT": str(free_port()),
        "MODELGATE_TRAINING_DATA": training_data_source(),
        "MODELGATE_AUTH_BCRYPT_ROUNDS": "4",
        **extra,
    }
    # The launcher's own database choice is under test here, not an inherited one.
    env.pop("MODELGATE_DATABASE_URL", None)
    env.pop("MODELGATE_REDIS_URL", None)
    return env


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``condition``; the timeout only ends a hung test, it measures nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


@dataclass
class Launcher:
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['MODELGATE_GATEWAY_PORT']}"

    def service(self, name: str) -> psutil.Process:
        """The uvicorn master of one service."""
        for child in psutil.Process(self.proc.pid).children():
            with_cmdline = " ".join(child.cmdline())
            if f"{name}_service.app:create_app" in with_cmdline:
                return child
        raise AssertionError(f"no {name} process under the launcher")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launcher]]:
    """Start ``make up``'s launcher and wait for its banner; killed at the end if still running."""
    started: list[Launcher] = []

    def start(**extra: str) -> Launcher:
        env = launcher_env(tmp_path / "state", **extra)
        log_path = tmp_path / f"up-{len(started)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(UP, env=env, stdout=log, stderr=subprocess.STDOUT)
        launcher = Launcher(proc, log_path, env)
        started.append(launcher)

        def up() -> bool:
            assert proc.poll() is None, launcher.output
            return "modelgate is up" in launcher.output

        wait_for(up, "the launcher's banner")
        return launcher

    yield start
    for launcher in started:
        if launcher.proc.poll() is None:
            launcher.proc.send_signal(signal.SIGTERM)
            try:
                launcher.proc.wait(60)
            except subprocess.TimeoutExpired:
                launcher.proc.kill()


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


def test_a_killed_service_is_restarted_while_the_others_keep_serving(launch: Callable[..., Launcher]) -> None:
    launcher = launch()
    gateway = launcher.gateway
    assert httpx.get(f"{gateway}/auth/.well-known/jwks.json").status_code == 200
    auth = launcher.service("auth")
    gateway_pid = launcher.service("gateway").pid

    auth.kill()
    auth.wait(30)
    # The gateway (and inference behind it) did not go down with auth.
    assert httpx.get(f"{gateway}/healthz").status_code == 200
    wait_for(lambda: "auth killed by SIGKILL" in launcher.output, "the log line naming auth and its signal")

    def auth_back() -> bool:
        with_timeout = httpx.get(f"{gateway}/auth/.well-known/jwks.json", timeout=5)
        return with_timeout.status_code == 200

    wait_for(auth_back, "auth answering through the gateway again")
    assert launcher.proc.poll() is None
    assert launcher.service("gateway").pid == gateway_pid  # nothing else was restarted
    assert launcher.service("auth").pid != auth.pid
    assert "restarting auth" in launcher.output

    # Only SIGTERM (or Ctrl-C) stops the stack, and it stops it cleanly.
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.proc.wait(60) == 0


def _postgres_pid(state: Path) -> int:
    return int((state / "postgres" / "postmaster.pid").read_text().split()[0])


def _gone(processes: list[psutil.Process]) -> Callable[[], bool]:
    def check() -> bool:
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in processes)

    return check


def test_a_killed_launcher_takes_its_servers_with_it(launch: Callable[..., Launcher], tmp_path: Path) -> None:
    launcher = launch()
    state = tmp_path / "state"
    everything = psutil.Process(launcher.proc.pid).children(recursive=True)
    postgres = psutil.Process(_postgres_pid(state))  # daemonised by pg_ctl: not among the children
    assert any("redis-server" in " ".join(p.cmdline()) for p in everything)

    launcher.proc.kill()  # SIGKILL: no clean-up code of the launcher runs
    launcher.proc.wait()
    wait_for(_gone([postgres, *everything]), "the launcher's servers to stop after it was killed", timeout=90)
    # The next run starts from the state folder as usual.
    again = launch()
    assert httpx.get(f"{again.gateway}/healthz").status_code == 200


def test_a_bad_service_setting_is_named_before_anything_starts(tmp_path: Path) -> None:
    env = launcher_env(tmp_path / "state", MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="lots")
    result = subprocess.run(UP, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT: 'lots' is not LIMIT/PERIOD" in result.stderr
    # Nothing was started: no state folder, hence no database, key or model.
    assert not (tmp_path / "state").exists()
    assert "modelgate is up" not in result.stdout


def test_an_unreachable_database_url_is_named_as_such(tmp_path: Path) -> None:
    url = f"postgresql://someone:hunter2-secret@127.0.0.1:{free_port()}/modelgate"
    env = {**launcher_env(tmp_path / "state"), "MODELGATE_DATABASE_URL": url}
    result = subprocess.run(UP, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "MODELGATE_DATABASE_URL" in result.stderr
    assert "connection refused" in result.stderr
    assert "migrations" not in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout
