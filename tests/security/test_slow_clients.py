"""Slow clients (issue 10, defect 12): a client that never finishes its request is not held.

The stack runs as ``make up`` runs it, with short deadlines (tests/conftest.py). No assertion
is about speed: each says that the server closed before a deadline far past the configured
timeout, which uvicorn on its own never does (it waits for a slow client for ever).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
from modelgate_shared.stack import SERVICES, Stack

from ..conftest import CLIENT_BODY_TIMEOUT_SECONDS, CLIENT_HEADER_TIMEOUT_SECONDS

DEADLINE = max(CLIENT_HEADER_TIMEOUT_SECONDS, CLIENT_BODY_TIMEOUT_SECONDS) + 20
SLOW_CLIENTS = 100


async def _connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE)
    except TimeoutError:
        pytest.fail(f"a slow client was still connected after {DEADLINE}s")


async def test_connections_that_never_finish_their_headers_are_closed(stack: Stack) -> None:
    """The issue's case: 100 connections that never finish their headers, while others are served."""
    attackers = [await _connect(stack.gateway_url) for _ in range(SLOW_CLIENTS)]
    for i, (_, writer) in enumerate(attackers):
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nX-Slow: " if i % 2 else b"POST /auth/tok")
        await writer.drain()
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=DEADLINE) as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/auth/.well-known/jwks.json")).status_code == 200  # proxied to auth
    answers = await asyncio.gather(*(_until_closed(reader) for reader, _ in attackers))
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:20] for a in answers}
    for _, writer in attackers:
        writer.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_closes_idle_and_unfinished_connections(stack: Stack, service: str) -> None:
    url = stack.url(service)
    idle_reader, idle = await _connect(url)  # connects and sends nothing at all
    partial_reader, partial = await _connect(url)
    partial.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert await _until_closed(idle_reader) == b""
    assert (await _until_closed(partial_reader)).startswith(b"HTTP/1.1 408 ")
    idle.close()
    partial.close()


@pytest.mark.parametrize(
    ("path", "length", "sent"),
    [
        ("/v1/models/diabetes/predict", 1_000, 10),  # a small body: the gateway reads it whole
        ("/v1/models/diabetes/predict", 1_000_000, 100_000),  # a large one: streamed to inference
        ("/auth/token", 500, 20),  # the login form, read whole for its username
    ],
)
async def test_a_body_that_stops_arriving_gets_408(stack: Stack, path: str, length: int, sent: int) -> None:
    reader, writer = await _connect(stack.gateway_url)
    content_type = b"application/x-www-form-urlencoded" if path == "/auth/token" else b"application/json"
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (path.encode(), content_type, length)
    )
    writer.write(b" " * sent)
    await writer.drain()
    answer = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    writer.close()
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=DEADLINE) as client:
        assert (await client.get("/healthz")).status_code == 200
