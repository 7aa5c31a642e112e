"""``migrate`` waits for a database that is not up yet, and only for one that is not up yet."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import asyncpg
import pytest
from modelgate_shared.db import DatabaseConnectError, asyncpg_dsn, is_transient, migrate, wait_for_database
from sqlalchemy.engine import make_url

SETTING = "MODELGATE_TEST_DATABASE_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect_upstream(server_url: str) -> Callable[[], socket.socket]:
    """How to open a connection to the test server: TCP, or its Unix socket (embedded server)."""
    parsed = make_url(server_url)
    socket_dir = parsed.query.get("host")
    if parsed.host is None and isinstance(socket_dir, str):
        path = str(Path(socket_dir) / f".s.PGSQL.{parsed.port or 5432}")

        def unix() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            return sock

        return unix
    return lambda: socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432))


class Forwarder:
    """A TCP port that relays to the test server once started: a server that comes up late."""

    def __init__(self, port: int, upstream: Callable[[], socket.socket]) -> None:
        self.port, self.upstream = port, upstream
        self.listener: socket.socket | None = None

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self.upstream()
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


def _on_port(database_url: str, port: int) -> str:
    """The same database, user and password, reached over TCP on 127.0.0.1:``port``."""
    parsed = make_url(database_url)
    query = {k: v for k, v in parsed.query.items() if k != "host"}
    return parsed.set(host="127.0.0.1", port=port, query=query).render_as_string(hide_password=False)


@pytest.fixture
def late_server(database_url: str, postgres_server_url: str) -> Iterator[tuple[str, Forwarder]]:
    forwarder = Forwarder(_free_port(), _connect_upstream(postgres_server_url))
    yield _on_port(database_url, forwarder.port), forwarder
    forwarder.close()


def test_a_refused_connection_is_retried_until_the_wait_is_over() -> None:
    url = f"postgresql://modelgate:secret-pw@127.0.0.1:{_free_port()}/modelgate"
    lines: list[str] = []
    with pytest.raises(DatabaseConnectError) as caught:
        wait_for_database(url, url_setting=SETTING, wait_seconds=1.5, interval_seconds=0.1, report=lines.append)
    assert caught.value.attempts >= 2 and lines
    message = str(caught.value)
    assert "connection refused" in message and SETTING in message and "MODELGATE_MIGRATE_WAIT_SECONDS" in message
    assert "secret-pw" not in message + "".join(lines)


def test_a_connection_closed_before_the_server_answers_is_retried() -> None:
    # What Docker's port forwarder does while the container's server does not listen yet.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"postgresql://modelgate:pw@127.0.0.1:{listener.getsockname()[1]}/modelgate"

        def close_each() -> None:
            with suppress(OSError):
                while True:
                    listener.accept()[0].close()

        threading.Thread(target=close_each, daemon=True).start()
        lines: list[str] = []
        with pytest.raises(DatabaseConnectError) as caught:
            wait_for_database(url, url_setting=SETTING, wait_seconds=1.5, interval_seconds=0.1, report=lines.append)
    assert caught.value.attempts >= 2 and lines and "still unreachable" in str(caught.value)


def test_no_wait_means_one_attempt() -> None:
    url = f"postgresql://modelgate:pw@127.0.0.1:{_free_port()}/modelgate"
    with pytest.raises(DatabaseConnectError) as caught:
        wait_for_database(url, url_setting=SETTING, wait_seconds=0, report=lambda _line: None)
    assert caught.value.attempts == 1


def test_a_server_that_comes_up_while_waiting_is_used(late_server: tuple[str, Forwarder]) -> None:
    url, forwarder = late_server
    lines: list[str] = []

    def report(line: str) -> None:
        # The first attempt was refused: only now does the server start listening.
        lines.append(line)
        if len(lines) == 1:
            forwarder.start()

    wait_for_database(url, url_setting=SETTING, wait_seconds=60, interval_seconds=0.1, report=report)
    assert len(lines) == 1 and "connection refused" in lines[0]


def _with(url: str, **parts: str) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("part", "value", "expected"),
    [("username", "no_such_role", "no_such_role"), ("database", "no_such_database", "no_such_database")],
)
def test_a_wrong_url_fails_at_once(late_server: tuple[str, Forwarder], part: str, value: str, expected: str) -> None:
    url, forwarder = late_server
    forwarder.start()
    with pytest.raises(DatabaseConnectError) as caught:
        wait_for_database(_with(url, **{part: value}), url_setting=SETTING, wait_seconds=60, report=pytest.fail)
    assert caught.value.attempts == 1
    assert SETTING in str(caught.value) and expected in str(caught.value)


def test_a_wrong_password_fails_at_once(late_server: tuple[str, Forwarder]) -> None:
    url, forwarder = late_server
    forwarder.start()
    role, password = f"r_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex

    async def create_role() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        finally:
            await conn.close()

    asyncio.run(create_role())
    wrong = _with(url, username=role, password="not-" + password)
    try:
        wait_for_database(wrong, url_setting=SETTING, wait_seconds=0, report=lambda _line: None)
    except DatabaseConnectError:
        pass
    else:
        pytest.skip("the test server does not check passwords (trust authentication)")
    with pytest.raises(DatabaseConnectError) as caught:
        wait_for_database(wrong, url_setting=SETTING, wait_seconds=60, report=pytest.fail)
    assert caught.value.attempts == 1 and "password" in str(caught.value) and SETTING in str(caught.value)
    assert password not in str(caught.value)


def test_an_unknown_host_fails_at_once() -> None:
    url = "postgresql://modelgate:pw@no-such-host.invalid:5432/modelgate"
    with pytest.raises(DatabaseConnectError) as caught:
        wait_for_database(url, url_setting=SETTING, wait_seconds=60, report=pytest.fail)
    assert caught.value.attempts == 1 and "no-such-host.invalid" in str(caught.value)


def test_starting_up_is_transient_and_a_bad_password_is_not() -> None:
    assert is_transient(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert not is_transient(asyncpg.InvalidPasswordError('password authentication failed for user "x"'))
    assert not is_transient(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))


def test_migrate_exits_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELGATE_MIGRATE_WAIT_SECONDS", "0")
    url = f"postgresql://modelgate:secret-pw@127.0.0.1:{_free_port()}/modelgate"
    with pytest.raises(SystemExit) as caught:
        migrate(tmp_path, url, "alembic_version_test", url_setting=SETTING)
    assert caught.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and SETTING in err and "connection refused" in err
    assert "secret-pw" not in err
