"""The backing services are real servers: these talk to them over real connections."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import psutil
import pytest
import redis
from modelgate_shared import backing
from modelgate_shared.db import async_url, asyncpg_dsn


async def test_database_fixture_is_a_real_postgres(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("CREATE TABLE t (x int)")
        await conn.execute("INSERT INTO t VALUES (41)")
        assert await conn.fetchval("SELECT x + 1 FROM t") == 42
    finally:
        await conn.close()


def test_redis_fixture_is_a_real_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    assert client.eval("return redis.call('INCRBY', KEYS[1], 5)", 1, "shared-test-counter") == 5


def test_async_url_normalises_drivers() -> None:
    assert async_url("postgres://u:p@h:5/db") == "postgresql+asyncpg://u:p@h:5/db"
    # pgserver's unix-socket form survives the rewrite.
    assert (
        async_url("postgresql://postgres:@/postgres?host=/tmp/x")
        == "postgresql+asyncpg://postgres:@/postgres?host=%2Ftmp%2Fx"
    )
    with pytest.raises(ValueError, match="must be PostgreSQL"):
        async_url("mysql://u@h/db")


# -- a Docker engine that answers but cannot run anything --------------------------------


class _FakeEngine(BaseHTTPRequestHandler):
    """Answers the Docker API's ping and version; has no images and cannot pull any."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        self.seen.append(f"{self.command} {path}")
        if path.endswith("/_ping"):
            self._answer(200, b"OK", "text/plain")
        elif path.endswith("/version"):
            self._answer(200, json.dumps({"ApiVersion": "1.44", "Version": "26.0.0", "MinAPIVersion": "1.24"}).encode())
        elif self.command == "GET" and "/images/" in path:
            self._answer(404, json.dumps({"message": "No such image"}).encode())
        else:
            self._answer(500, json.dumps({"message": "fake engine: no network, cannot pull images"}).encode())

    do_GET = do_POST = do_DELETE = do_HEAD = _handle

    def address_string(self) -> str:  # a Unix socket peer has no address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def broken_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    sock = Path(tempfile.mkdtemp(prefix="mg-docker-")) / "docker.sock"
    server = socketserver.ThreadingUnixStreamServer(str(sock), _FakeEngine)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeEngine.seen = []
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # straight to the image pull
    monkeypatch.delenv(backing.DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(backing.REDIS_URL_ENV, raising=False)
    monkeypatch.setattr(backing, "_docker_unusable", None, raising=False)
    try:
        yield _FakeEngine.seen
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_an_engine_that_cannot_run_containers_falls_back_with_one_warning(broken_docker: list[str]) -> None:
    assert backing.docker_available()  # it answers: the fixtures will try it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with backing.temporary_backing(allow_docker=True) as (pg, redis_server):
            assert (pg.origin, redis_server.origin) == ("embedded", "embedded")
            assert redis.Redis.from_url(redis_server.url).ping()
        # A second session (another suite's fixtures in this process) asks the engine no more.
        asked = len(broken_docker)
        with backing.temporary_backing(allow_docker=True) as (pg, _):
            assert pg.origin == "embedded"
        assert len(broken_docker) == asked
    ours = [w for w in caught if issubclass(w.category, backing.DockerUnusableWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "could not start a PostgreSQL container" in str(ours[0].message)
    assert "cannot pull images" in str(ours[0].message)
    assert "POST /v1.44/images/create" in broken_docker  # a pull was really tried


def test_fixtures_under_such_an_engine_pass_with_one_warning(broken_docker: list[str], tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "test_uses_backing.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.parametrize("n", range(5))
            def test_redis(redis_url, n):
                assert redis_url.startswith("unix://")

            @pytest.mark.parametrize("n", range(5))
            def test_postgres(database_url, n):
                assert database_url.startswith("postgresql://")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "10 passed, 1 warning" in result.stdout
    assert result.stdout.count("DockerUnusableWarning") == 1
    assert "Traceback" not in result.stdout + result.stderr


# -- what a killed run leaves behind is stopped by the next ------------------------------


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_a_postgres_left_by_a_killed_run_is_stopped_by_the_next(tmp_path: Path) -> None:
    data_dir = tmp_path / "postgres"
    # A run that started the server through pgserver and was then SIGKILLed (an OOM kill, a
    # closed terminal): it never took its pid off pgserver's list of the server's users.
    killed_run = textwrap.dedent(
        """
        import os, signal, sys, warnings
        warnings.filterwarnings("ignore")
        import pgserver
        server = pgserver.get_server(sys.argv[1], cleanup_mode="stop")
        print(server.get_pid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", killed_run, str(data_dir)], capture_output=True, text=True)
    leftover = int(result.stdout.split()[0])
    try:
        assert _alive(leftover)
        provided = backing._embedded_postgres(data_dir, delete_on_close=False)
        try:
            asyncio.run(_select_one(provided.url))
        finally:
            provided.close()
        assert _wait_dead(leftover), "the adopted server is still running after a clean close"
    finally:
        if _alive(leftover):
            os.kill(leftover, signal.SIGKILL)


async def _select_one(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def test_a_redis_left_by_a_killed_run_is_stopped_by_the_next(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    sock = data_dir / "redis.sock"
    binary = backing.redis_server_binary()
    # As a run before this fix started it: its own session, nothing tying it to its parent.
    args = [binary, "--port", "0", "--unixsocket", str(sock), "--dir", str(data_dir), "--save", ""]
    leftover = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and leftover.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        provided = backing._embedded_redis(data_dir, delete_on_close=False)
        try:
            assert leftover.wait(30) is not None  # stopped before the new one started
            assert redis.Redis.from_url(provided.url).ping()
        finally:
            provided.close()
    finally:
        if leftover.poll() is None:
            leftover.kill()
