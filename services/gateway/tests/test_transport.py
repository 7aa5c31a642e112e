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
        async with _server(hangs_up) as (url, _):
            client, transport = _client(url)
            async with client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/")
                assert transport.open_connections == 0

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
