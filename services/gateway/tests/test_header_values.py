"""Request header values on their way upstream (issue 10, defect 4): optional whitespace is
trimmed (RFC 9110 5.5), and a value the upstream hop will not send is the client's 400, never a 502.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_network
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from gateway_service.app import create_app
from gateway_service.forwarding import unforwardable_header_detail, upstream_headers
from gateway_service.settings import GatewaySettings
from modelgate_shared.testing import TokenSigner

TRUSTED = [ip_network("10.0.0.0/8")]


def test_upstream_headers_trim_optional_whitespace_of_every_value() -> None:
    headers = [
        (b"host", b"api.example \t"),
        (b"authorization", b"Bearer t \t"),
        (b"x-both", b"\t a b \t"),
        (b"x-inner", b"a \t b"),  # whitespace inside a value is part of it
        (b"x-blank", b" \t "),
        (b"x-forwarded-proto", b"https\t"),
    ]
    out = upstream_headers(headers, peer="10.0.0.1", scheme="http", request_id="rid", trusted=TRUSTED)
    assert out == [
        (b"authorization", b"Bearer t"),
        (b"x-both", b"a b"),
        (b"x-inner", b"a \t b"),
        (b"x-blank", b""),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"api.example"),
        (b"x-request-id", b"rid"),
    ]


def test_unforwardable_header_detail_names_the_header_not_its_value() -> None:
    good = [(b"host", b"x"), (b"x-ok", b" fine\t")]
    detail = unforwardable_header_detail([*good, (b"x-bad", b"secret\x00value")])
    assert "'x-bad'" in detail and "secret" not in detail
    assert "name" in unforwardable_header_detail([(b"bad name", b"v")])
    assert unforwardable_header_detail(good) == "the request cannot be forwarded as HTTP/1.1"


def raw_request(url: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request written byte for byte (httpx would refuse to send these headers itself)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.decode().lower()] = value.decode("latin-1").strip()
    return int(status_line.split()[1]), headers, body


def test_trailing_whitespace_in_any_header_is_trimmed_not_a_502(
    make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    """uvicorn (httptools) hands trailing SP/HTAB to the app; h11 would not send it upstream."""
    gateway = make_gateway()
    port = urlsplit(gateway).port
    token = signer.token()
    head = (
        f"GET /v1/echo HTTP/1.1\r\nHost: 127.0.0.1:{port} \t\r\n"
        f"Authorization: Bearer {token} \r\n"
        "User-Agent: raw-test/1 \r\n"
        "X-Trailing-Space: a \r\n"
        "X-Trailing-Tab: b\t\r\n"
        "X-Both:\t c d \t\r\n"
        "X-Request-ID: trailing-ws-1 \r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, headers, body = raw_request(gateway, head)
    assert status == 200, body
    seen = dict(json.loads(body)["headers"])
    assert seen["x-trailing-space"] == "a"
    assert seen["x-trailing-tab"] == "b"
    assert seen["x-both"] == "c d"
    assert seen["user-agent"] == "raw-test/1"
    assert seen["authorization"] == f"Bearer {token}"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{port}"
    # The client's id, without its whitespace, is the request's id.
    assert seen["x-request-id"] == headers["x-request-id"] == "trailing-ws-1"


# Values no HTTP/1.1 server in front of the gateway lets through (uvicorn refuses them with its
# own 400, or folds obs-fold to SP), fed to the app directly: the last line of defence holds.
BAD_VALUES = [
    b"a\r\nx-injected: 1",
    b"a\r\n b",  # obs-fold
    b"a\nb",
    b"a\rb",
    b"a\x00b",
    b"a\x0bb",
    b"a\x0cb",
]


@pytest.fixture
async def in_process_gateway(gateway_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FastAPI]:
    for key, value in gateway_env.items():
        monkeypatch.setenv(key, value)
    app = create_app(GatewaySettings())  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        yield app


async def asgi_get(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], json.loads(body)


@pytest.mark.parametrize("value", BAD_VALUES)
async def test_a_value_the_upstream_hop_refuses_is_a_400(in_process_gateway: FastAPI, value: bytes) -> None:
    status, body = await asgi_get(in_process_gateway, "/v1/echo", [(b"x-bad", value)])
    assert status == 400, body
    assert body["error"] == "bad_header"
    assert "'x-bad'" in body["detail"]
    # Answered by the gateway: the echo upstream never saw the request.
    assert "upstream" not in body


async def test_a_bad_header_name_is_a_400(in_process_gateway: FastAPI) -> None:
    status, body = await asgi_get(in_process_gateway, "/v1/echo", [(b"x bad", b"v")])
    assert status == 400, body
    assert body["error"] == "bad_header"


async def test_the_refusal_does_not_cost_the_next_request(in_process_gateway: FastAPI) -> None:
    assert (await asgi_get(in_process_gateway, "/v1/echo", [(b"x-bad", b"a\x00b")]))[0] == 400
    status, body = await asgi_get(in_process_gateway, "/v1/echo", [(b"x-good", b"fine")])
    assert status == 200 and body["upstream"] == "inference"
