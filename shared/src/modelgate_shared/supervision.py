"""Child processes of the launcher: restart backoff, exit descriptions, and dying with it.

Standard library only: ``python -m modelgate_shared.supervision watch PID`` runs as a small
watchdog process next to each daemonised server, and must start fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1
# What the launcher writes to a watchdog before closing its pipe: "stopped it myself, do nothing".
_RELEASE = b"release\n"


@dataclass(frozen=True)
class Backoff:
    """Exponential restart delays, capped; a child that stayed up ``reset_after`` starts over."""

    initial: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, restarts: int) -> float:
        """Seconds to wait before restart number ``restarts + 1`` in a row."""
        return min(self.cap, self.initial * 2.0 ** min(restarts, 32))

    def next_restarts(self, restarts: int, uptime: float) -> int:
        """The count of restarts in a row, given how long the child stayed up before it exited."""
        return 0 if uptime >= self.reset_after else restarts


def describe_exit(returncode: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` (Popen reports a signal as a negative code)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit status {returncode}"


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when this process dies, even by SIGKILL.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op. Call Popen from a thread that lives
    as long as the child (the signal fires when the creating thread exits): the main thread.
    """

    def preexec() -> None:
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


class Watchdog:
    """Stops a process this one did not fork (pg_ctl daemonises postgres) if this one dies.

    A separate small process holds the read end of a pipe; when the pipe closes without the
    release word (this process died, however), it signals ``pid`` and waits for it to go.
    """

    def __init__(self, pid: int, sig: int) -> None:
        self.pid = pid
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "modelgate_shared.supervision", "watch", str(pid), str(int(sig))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the launcher must not reach it.
            start_new_session=True,
        )

    def release(self) -> None:
        """The server was stopped (or handed over) properly: the watchdog exits doing nothing."""
        stdin = self._proc.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.write(_RELEASE)
                stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process (postgres run as its own user by pgserver): it exists
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(pid, 0) said it exists


def _watch(pid: int, sig: int, grace: float = 30.0) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    message = sys.stdin.buffer.read()  # returns when the launcher closes the pipe or dies
    if message == _RELEASE or not process_alive(pid):
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "watch":
        raise SystemExit(_watch(int(sys.argv[2]), int(sys.argv[3])))
    raise SystemExit("usage: python -m modelgate_shared.supervision watch PID SIGNAL")
