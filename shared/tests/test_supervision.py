"""Restart backoff, exit descriptions and the watchdog that stops a server when its owner dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from modelgate_shared.supervision import Backoff, Watchdog, describe_exit


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=1.0, cap=30.0)
    assert [backoff.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(10_000) == 30  # no overflow however long it keeps failing


def test_backoff_starts_over_once_a_child_stayed_up() -> None:
    backoff = Backoff(reset_after=60.0)
    assert backoff.next_restarts(5, uptime=3.0) == 5
    assert backoff.next_restarts(5, uptime=60.0) == 0


@pytest.mark.parametrize(
    ("code", "text"),
    [(1, "exit status 1"), (0, "exit status 0"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")],
)
def test_exit_description_names_the_status_or_signal(code: int, text: str) -> None:
    assert describe_exit(code) == text


def _wait_gone(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def test_watchdog_stops_the_server_when_its_owner_is_killed() -> None:
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    owner_code = textwrap.dedent(
        f"""
        import signal, sys, time
        from modelgate_shared.supervision import Watchdog
        Watchdog({server.pid}, signal.SIGTERM)
        print("watching", flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None and owner.stdout.readline() == b"watching\n"
        assert server.poll() is None
        owner.kill()  # SIGKILL: the owner runs no clean-up at all
        owner.wait()
        assert _wait_gone(server) == -signal.SIGTERM
    finally:
        for proc in (owner, server):
            if proc.poll() is None:
                proc.kill()


def test_a_released_watchdog_leaves_the_server_alone() -> None:
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        Watchdog(server.pid, signal.SIGTERM).release()
        time.sleep(0.5)  # not a timing assertion: only gives a wrong kill the chance to happen
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()
