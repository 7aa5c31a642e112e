"""Upstreams that close keep-alive connections: the gateway's next request must not become a 502.

Issue 10, defect 3: after an upstream answered 500 and closed the connection, the gateway sent
the next request into that connection (502 every time); under load, an idle connection the
upstream closed just as a request went out did the same, rarely. These run the whole gateway
against real upstreams: uvicorn itself (what auth and inference run on), and a raw server that
closes an idle connection exactly when the next request arrives (the keep-alive race, made
deterministic).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .servers import serve


def _routes(upstream: str) -> str:
    return json.dumps([{"prefix": "/x/", "upstreams": [upstream], "strip_prefix": True}])


def _failing_app() -> ASGIApp:
    """``/boom``: the endpoint raises (Starlette's ServerErrorMiddleware answers 500 without
    ``Connection: close``, re-raises, and uvicorn then closes the connection); ``/boom-early``:
    the app raises before any response (uvicorn's own 500, with ``Connection: close``)."""
    app = FastAPI()

    @app.api_route("/boom", methods=["GET", "POST"])
    async def boom() -> None:
        raise RuntimeError("the upstream failed")

    @app.api_route("/echo", methods=["GET", "POST"])
    async def echo(request: Request) -> dict[str, int]:
        return {"body_bytes": len(await request.body())}

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/boom-early":
            raise RuntimeError("the upstream failed before answering")
        await app(scope, receive, send)

    return outer


@pytest.fixture(scope="module")
def failing_upstream() -> Iterator[str]:
    with serve(_failing_app()) as url:
        yield url


@pytest.mark.parametrize("failure", ["/boom", "/boom-early"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_request_after_an_upstream_500_is_answered(
    make_gateway: Callable[..., str], failing_upstream: str, method: str, failure: str
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_ROUTES=_routes(failing_upstream))
    content = b"b" * 100 if method == "POST" else None
    with httpx.Client(base_url=gateway, timeout=10) as client:
        for _ in range(5):
            assert client.request(method, f"/x{failure}", content=content).status_code == 500
            after = client.request(method, "/x/echo", content=content)
            assert after.status_code == 200, after.text
            assert after.json() == {"body_bytes": 100 if content else 0}


class _ClosesReusedConnections(socketserver.ThreadingTCPServer):
    """Answers the first request on each connection (200, keep-alive) and closes the connection,
    unanswered, when the next request arrives on it: "fin" an orderly close, "rst" a reset."""

    daemon_threads = True

    def __init__(self, close: str) -> None:
        self.close = close
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _AnswerOnce)


class _AnswerOnce(socketserver.BaseRequestHandler):
    server: _ClosesReusedConnections

    def handle(self) -> None:
        self.server.connections += 1
        sock: socket.socket = self.request
        with sock.makefile("rb") as stream:
            for answered in (False, True):
                if not stream.readline():
                    return
                length = 0
                while (line := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = stream.read(length)
                if answered:
                    break
                answer = json.dumps({"body_bytes": len(body)}).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))
        if self.server.close == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@contextlib.contextmanager
def _closing_upstream(close: str) -> Iterator[_ClosesReusedConnections]:
    server = _ClosesReusedConnections(close)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_meeting_the_upstreams_close_of_an_idle_connection_is_answered(
    make_gateway: Callable[..., str], method: str, close: str
) -> None:
    with _closing_upstream(close) as upstream:
        host, port = upstream.server_address[:2]
        gateway = make_gateway(MODELGATE_GATEWAY_ROUTES=_routes(f"http://{host}:{port}"))
        content = b"b" * 100 if method == "POST" else None
        with httpx.Client(base_url=gateway, timeout=10) as client:
            for _ in range(4):
                response = client.request(method, "/x/echo", content=content)
                assert response.status_code == 200, response.text
                assert response.json() == {"body_bytes": 100 if content else 0}
        # Every request after the first met a closed connection and was sent again on a new one.
        assert upstream.connections == 4
