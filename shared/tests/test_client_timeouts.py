"""Slow clients against uvicorn with ClientTimeoutProtocol, over real sockets.

No assertion is about speed: each says the server closed (or answered) before a generous
deadline, long after the configured timeout, which a server without the timeouts never does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from modelgate_shared.client_timeouts import ClientTimeoutProtocol, ClientTimeouts

TIMEOUT = 0.5
DEADLINE = TIMEOUT + 10


class ShortTimeouts(ClientTimeoutProtocol):
    timeouts = ClientTimeouts(header_timeout_seconds=TIMEOUT, body_timeout_seconds=TIMEOUT)


class Recorder:
    """An app that reads the whole body and answers its size; it records what receive() gave it."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/late-reader":
            await asyncio.sleep(6 * TIMEOUT)  # the server is behind the client, not the other way round
        if scope["path"] == "/early":  # answers by the headers alone, as a 413 or a 429 does
            await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        size = 0
        while True:
            message = await receive()
            self.received.append(message["type"])
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, port: int, app: Recorder) -> None:
        self.port = port
        self.app = app
        self.url = f"http://127.0.0.1:{port}"


def _serve(protocol: type[ClientTimeoutProtocol]) -> Iterator[Served]:
    app = Recorder()
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning", timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "test server did not start"
    try:
        yield Served(port, app)
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve(ShortTimeouts)


async def _connect(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", served.port)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed by DEADLINE."""
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE)
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {DEADLINE}s (timeout {TIMEOUT}s)")


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


async def test_a_connection_that_sends_nothing_is_closed(served: Served) -> None:
    reader, writer = await _connect(served)
    assert await _until_closed(reader) == b""  # nothing was asked, so nothing is answered
    writer.close()


async def test_unfinished_headers_get_408_and_the_connection_closes(served: Served) -> None:
    reader, writer = await _connect(served)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
    answer = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert served.app.received == []  # the app never saw the request
    writer.close()


async def test_dripping_header_bytes_does_not_extend_the_deadline(served: Served) -> None:
    reader, writer = await _connect(served)
    writer.write(b"GET / HTTP/1.1\r\nX-Slow: ")
    closed = asyncio.ensure_future(reader.read())
    started = time.monotonic()
    # A byte every tenth of the timeout, for as long as the server listens.
    while not closed.done() and time.monotonic() - started < DEADLINE:
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(TIMEOUT / 10)
    await asyncio.wait([closed], timeout=1)
    assert closed.done(), f"the server kept a client dripping header bytes for {DEADLINE}s"
    writer.close()


async def test_the_next_request_on_a_kept_alive_connection_is_timed_too(served: Served) -> None:
    reader, writer = await _connect(served)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _ = await _response(reader)
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET / HTTP/1.1\r\nHos")
    assert (await _until_closed(reader)).startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_stalled_body_gets_408_and_the_app_sees_a_disconnect(served: Served) -> None:
    reader, writer = await _connect(served)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    answer = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request body" in answer
    assert served.app.received[-1] == "http.disconnect"
    writer.close()


async def test_an_upgrade_header_does_not_escape_the_body_deadline(served: Served) -> None:
    reader, writer = await _connect(served)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\nContent-Length: 100\r\n\r\n")
    await _until_closed(reader)
    writer.close()


@pytest.mark.parametrize("rest_of_body", [b"x" * 90, b""], ids=["sent", "never sent"])
async def test_a_connection_answered_before_its_body_does_not_stay_open(served: Served, rest_of_body: bytes) -> None:
    reader, writer = await _connect(served)
    writer.write(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    head, _ = await _response(reader)
    assert head.startswith(b"HTTP/1.1 413 ")
    writer.write(rest_of_body)  # then idle: kept alive for uvicorn's keep-alive timeout, no longer
    assert await _until_closed(reader) == b""
    writer.close()


async def test_time_the_server_is_behind_does_not_count_against_the_body(served: Served) -> None:
    # The app reads nothing for 6 timeouts; the client sends half, waits two timeouts, sends the rest.
    reader, writer = await _connect(served)
    writer.write(b"POST /late-reader HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n" + b"x" * 10)
    await asyncio.sleep(2 * TIMEOUT)
    writer.write(b"y" * 10)
    head, body = await _response(reader)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"20"
    writer.close()


async def test_a_slow_but_steady_body_is_not_cut_off() -> None:
    """The body timeout is the longest gap between pieces, not a total."""

    class Roomy(ClientTimeoutProtocol):
        timeouts = ClientTimeouts(header_timeout_seconds=5, body_timeout_seconds=2)

    for served in _serve(Roomy):
        reader, writer = await _connect(served)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        for _ in range(6):  # 3 s in all, longer than the timeout; each gap well inside it
            await asyncio.sleep(0.5)
            writer.write(b"x")
        head, body = await _response(reader)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"6"
        writer.close()


async def test_requests_are_served_while_slow_clients_hold_connections(served: Served) -> None:
    attackers = [await _connect(served) for _ in range(100)]
    for _, writer in attackers:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Never: ")
    async with httpx.AsyncClient(base_url=served.url, timeout=DEADLINE) as client:
        for _ in range(5):
            response = await client.post("/", content=b"abc")
            assert response.status_code == 200 and response.text == "3"
    answers = await asyncio.gather(*(_until_closed(reader) for reader, _ in attackers))
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    for _, writer in attackers:
        writer.close()


@pytest.mark.parametrize("name", ["MODELGATE_HEADER_TIMEOUT_SECONDS", "MODELGATE_BODY_TIMEOUT_SECONDS"])
def test_a_bad_setting_stops_the_server_at_start_naming_it(name: str) -> None:
    env = {**os.environ, name: "0"}
    code = "import modelgate_shared.client_timeouts"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert name in result.stderr


def test_the_settings_default_to_ten_and_thirty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELGATE_HEADER_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("MODELGATE_BODY_TIMEOUT_SECONDS", raising=False)
    assert ClientTimeouts() == ClientTimeouts(header_timeout_seconds=10, body_timeout_seconds=30)
