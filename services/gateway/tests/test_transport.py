"""The upstream transport (asyncio network backend + pool) on its own, on asyncio and uvloop.

Each test runs a real server and drives httpx through :class:`UpstreamTransport`: the
proxy maps these httpx errors to 502/504, so the mapping and the timeouts are the contract.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gateway_service.transport import UpstreamTransport

from .servers import free_port

Run = Callable[[Coroutine[Any, Any, None]], None]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a test body on the stock asyncio loop and on uvloop (what uvicorn uses in production)."""
    if request.param == "uvloop":
        return uvloop.run
    return asyncio.run


def _client(
    base_url: str,
    *,
    max_connections: int = 10,
    timeout: httpx.Timeout | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[httpx.AsyncClient, UpstreamTransport]:
    transport = UpstreamTransport(httpx.Limits(max_connections=max_connections, keepalive_expiry=30), ssl_context)
    client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout or httpx.Timeout(5.0))
    return client, transport


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def _read_request_body(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The request head and its body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    for line in lines:
        if line.startswith(b"content-length:"):
            return head, await reader.readexactly(int(line.split(b":")[1]))
    if b"transfer-encoding: chunked" in lines:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return head, body
    return head, b""


def _sized(body: bytes) -> bytes:
    """A 200 whose body is the size of the request body it answers."""
    size = str(len(body)).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(size), size)


def _close(writer: asyncio.StreamWriter, how: str) -> None:
    """Close a connection: "fin" as a server closing an idle connection (the client reads end of
    file), "rst" with SO_LINGER 0 (the client's read fails: connection reset), which is what the
    client sees when the server closes with the request unread, as uvicorn does after a 500."""
    if how == "rst":
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _answer_ok_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await _read_request(reader)
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


@asynccontextmanager
async def _server(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP/1.1 server; yields its URL and a list that counts accepted connections."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await handler(reader, writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    async with server:
        yield f"{scheme}://127.0.0.1:{port}", accepted


def test_keep_alive_connection_is_reused(run: Run, inference_upstream: str) -> None:
    async def body() -> None:
        client, transport = _client(inference_upstream)
        async with client:
            for _ in range(3):
                response = await client.post("/echo", content=b"x" * 100)
                assert response.status_code == 200
                assert response.json()["body_bytes"] == 100
            assert transport.open_connections == 1

    run(body())


def test_concurrent_requests_share_a_bounded_pool(run: Run) -> None:
    async def body() -> None:
        async with _server(_answer_ok_forever) as (url, accepted):
            client, transport = _client(url, max_connections=3)
            async with client:
                answers = await asyncio.gather(*(client.get("/") for _ in range(30)))
                assert [a.text for a in answers] == ["ok"] * 30
                assert len(accepted) <= 3
                assert transport.open_connections <= 3

    run(body())


def test_refused_connection_is_connect_error(run: Run) -> None:
    async def body() -> None:
        client, transport = _client(f"http://127.0.0.1:{free_port()}")
        async with client:
            with pytest.raises(httpx.ConnectError):
                await client.get("/")
            assert transport.open_connections == 0

    run(body())


def test_connect_timeout(run: Run) -> None:
    # A listener that never accepts, its backlog full: the kernel drops further SYNs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)

    async def body() -> None:
        client, transport = _client(f"http://127.0.0.1:{port}", timeout=httpx.Timeout(5.0, connect=0.3))
        async with client:
            with pytest.raises(httpx.ConnectTimeout):
                await client.get("/")
            assert transport.open_connections == 0

    try:
        run(body())
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def test_read_timeout(run: Run) -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(10)

    async def body() -> None:
        async with _server(never_answers) as (url, _):
            client, transport = _client(url, timeout=httpx.Timeout(5.0, read=0.3))
            async with client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.get("/")
                assert transport.open_connections == 0

    run(body())


def test_write_timeout_when_the_upstream_stops_reading(run: Run) -> None:
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB: far more than the socket buffers hold
            yield b"w" * 65536

    async def body() -> None:
        async with _server(never_reads) as (url, _):
            client, _transport = _client(url, timeout=httpx.Timeout(5.0, write=0.3))
            async with client:
                with pytest.raises(httpx.WriteTimeout):
                    await client.post("/", content=chunks())

    run(body())


def test_pool_timeout_then_the_freed_connection_is_reused(run: Run) -> None:
    async def body() -> None:
        async with _server(_answer_ok_forever) as (url, accepted):
            client, _transport = _client(url, max_connections=1, timeout=httpx.Timeout(5.0, pool=0.2))
            async with client:
                held = await client.send(client.build_request("GET", "/"), stream=True)
                with pytest.raises(httpx.PoolTimeout):
                    await client.get("/")
                assert await held.aread() == b"ok"  # read whole: the connection can be reused
                await held.aclose()
                assert (await client.get("/")).text == "ok"
                assert len(accepted) == 1

    run(body())


def test_waiting_request_gets_the_slot_of_a_response_closed_unread(run: Run) -> None:
    async def body() -> None:
        async with _server(_answer_ok_forever) as (url, accepted):
            client, transport = _client(url, max_connections=1, timeout=httpx.Timeout(5.0, pool=2.0))
            async with client:
                held = await client.send(client.build_request("GET", "/"), stream=True)
                waiting = asyncio.ensure_future(client.get("/"))
                await asyncio.sleep(0.05)
                assert not waiting.done()
                await held.aclose()  # body unread: that connection cannot be reused, so it is dropped
                assert (await waiting).text == "ok"
                assert len(accepted) == 2
                assert transport.open_connections == 1

    run(body())


def test_upstream_closing_without_an_answer_is_a_protocol_error(run: Run) -> None:
    async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    async def body() -> None:
        async with _server(hangs_up) as (url, accepted):
            client, transport = _client(url)
            async with client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/")
                assert transport.open_connections == 0
                assert len(accepted) == 1  # a fresh connection that fails is not retried

    run(body())


def test_a_connection_the_upstream_closed_while_idle_is_replaced(run: Run) -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()
        writer.close()  # keep-alive was implied, but this upstream closes the idle connection

    async def body() -> None:
        async with _server(one_answer_then_close) as (url, accepted):
            client, transport = _client(url)
            async with client:
                assert (await client.get("/")).text == "ok"
                await asyncio.sleep(0.1)  # the close reaches the pooled connection
                assert (await client.get("/")).text == "ok"
                assert len(accepted) == 2
                assert transport.open_connections == 1
                assert transport.retries == 0  # seen closed when taken from the pool, not sent into

    run(body())


def _answers_once_per_connection(close: str, later_connections: str = "answer") -> Handler:
    """Answers the first request on a connection, then closes that connection unanswered when the
    next request arrives: a server closing an idle keep-alive connection just as a request is
    sent on it (the keep-alive race). ``later_connections="hang up"``: connections after the
    first close on their first request too."""
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            _, body = await _read_request_body(reader)
            if len(connections) > 1 and later_connections == "hang up":
                _close(writer, close)
                return
            writer.write(_sized(body))
            await writer.drain()
            await _read_request_body(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        _close(writer, close)

    return handler


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_meeting_the_upstreams_close_of_a_reused_connection_is_sent_again_on_a_new_one(
    run: Run, method: str, close: str
) -> None:
    async def body() -> None:
        async with _server(_answers_once_per_connection(close)) as (url, accepted):
            # One connection allowed: the retry takes the dead connection's place, no pool wait.
            client, transport = _client(url, max_connections=1, timeout=httpx.Timeout(5.0, pool=0.5))
            async with client:
                for _ in range(3):
                    content = b"p" * 100 if method == "POST" else None
                    response = await client.request(method, "/", content=content)
                    assert response.status_code == 200
                    assert response.text == ("100" if method == "POST" else "0")  # the body went whole
                assert len(accepted) == 3
                assert transport.retries == 2
                assert transport.open_connections == 1

    run(body())


def test_a_streamed_body_that_has_started_is_not_sent_again(run: Run) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"s" * 100

    async def body() -> None:
        async with _server(_answers_once_per_connection("fin")) as (url, accepted):
            client, transport = _client(url)
            async with client:
                assert (await client.get("/")).status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.post("/", content=chunks())
                assert len(accepted) == 1
                assert transport.retries == 0
                assert transport.open_connections == 0

    run(body())


def test_a_retry_that_fails_too_is_not_retried_again(run: Run) -> None:
    async def body() -> None:
        async with _server(_answers_once_per_connection("fin", later_connections="hang up")) as (url, accepted):
            client, transport = _client(url)
            async with client:
                assert (await client.get("/")).status_code == 200
                # Reused connection closed: sent again once, on a new connection, which hangs up too.
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/")
                assert len(accepted) == 2
                assert transport.retries == 1
                assert transport.open_connections == 0

    run(body())


def test_a_reused_connection_that_failed_after_the_first_response_byte_is_not_retried(run: Run) -> None:
    async def answers_then_breaks_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")  # the upstream had started to answer
        await writer.drain()
        writer.close()

    async def body() -> None:
        async with _server(answers_then_breaks_off) as (url, accepted):
            client, transport = _client(url)
            async with client:
                assert (await client.get("/")).text == "ok"
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.post("/", content=b"once")
                assert len(accepted) == 1
                assert transport.retries == 0

    run(body())


def test_a_reused_connection_that_times_out_is_not_retried(run: Run) -> None:
    async def answers_once_then_sleeps(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await _read_request(reader)
        await asyncio.sleep(10)

    async def body() -> None:
        async with _server(answers_once_then_sleeps) as (url, accepted):
            client, transport = _client(url, timeout=httpx.Timeout(5.0, read=0.3))
            async with client:
                assert (await client.get("/")).text == "ok"
                with pytest.raises(httpx.ReadTimeout):
                    await client.get("/")
                assert len(accepted) == 1
                assert transport.retries == 0

    run(body())


INTERNAL_ERROR = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 21\r\n%s\r\nInternal Server Error"


@pytest.mark.parametrize("connection_close", [False, True], ids=["keep-alive implied", "connection close"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_after_a_500_and_the_upstreams_close_the_next_request_succeeds(
    run: Run, method: str, connection_close: bool
) -> None:
    """What uvicorn does after an unhandled exception in a Starlette/FastAPI app: the 500
    (ServerErrorMiddleware's) goes out complete, and the connection is closed ~1 ms later with
    whatever request arrived meanwhile unread. Without an exception middleware, uvicorn's own 500
    says "Connection: close"."""

    async def fails_then_closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head, body = await _read_request_body(reader)
                if not head.startswith(b"GET /boom"):
                    writer.write(_sized(body))
                    continue
                writer.write(INTERNAL_ERROR % (b"connection: close\r\n" if connection_close else b""))
                await writer.drain()
                if not connection_close:
                    # Late: the close comes once the next request is here (or after a while).
                    with suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(1), 1.0)
                _close(writer, "rst")
                return

    async def body() -> None:
        async with _server(fails_then_closes) as (url, accepted):
            client, transport = _client(url)
            async with client:
                for _ in range(3):
                    assert (await client.get("/boom")).status_code == 500
                    content = b"p" * 100 if method == "POST" else None
                    response = await client.request(method, "/", content=content)
                    assert response.status_code == 200
                    assert response.text == ("100" if method == "POST" else "0")
                # A connection that answered 500 is not reused, so nothing needed a retry.
                assert transport.retries == 0
                assert len(accepted) == 4
                assert transport.open_connections == 1

    run(body())


def test_large_bodies_stream_both_ways(run: Run, inference_upstream: str) -> None:
    size = 4 * 1024 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // 65536):
            yield b"z" * 65536

    async def body() -> None:
        client, _transport = _client(inference_upstream)
        async with client:
            response = await client.post("/upload", content=chunks())
            assert response.json() == {"bytes": size, "chunks": response.json()["chunks"]}
            assert response.json()["chunks"] > 10
            async with client.stream("GET", "/stream", params={"parts": 200}) as streamed:
                got = b"".join([part async for part in streamed.aiter_raw()])
            assert got == b"".join(f"part{i}\n".encode() for i in range(200))

    run(body())


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def test_https_upstream(run: Run, tmp_path: Path) -> None:
    server_context, client_context = _self_signed(tmp_path)

    async def body() -> None:
        async with _server(_answer_ok_forever, server_context) as (url, accepted):
            client, _transport = _client(url, ssl_context=client_context)
            async with client:
                assert (await client.get("/")).text == "ok"
                assert (await client.get("/")).text == "ok"
                assert len(accepted) == 1
            # An upstream whose certificate is not trusted is a connection failure (502), not a crash.
            untrusting, _ = _client(url)
            async with untrusting:
                with pytest.raises(httpx.ConnectError):
                    await untrusting.get("/")

    run(body())
