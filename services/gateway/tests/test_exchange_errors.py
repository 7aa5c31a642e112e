"""The gateway's own failures inside an exchange (issue 10, defect 7): a 500 JSON answer when
no response has started, one log line without data, and 500 (not 499) in the request log and
metrics; 499 stays for a client that went away."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from gateway_service import proxy
from gateway_service.app import create_app
from gateway_service.settings import GatewaySettings
from gateway_service.state import GatewayState

from .conftest import log_rows
from .servers import serve, wait_until

SECRET = "s3cret-from-the-request"


class Boom(RuntimeError):
    pass


@pytest.fixture
def served(gateway_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GatewayState, str]]:
    """A gateway over real HTTP, with its state at hand to break."""
    for key, value in gateway_env.items():
        monkeypatch.setenv(key, value)
    app = create_app(GatewaySettings())  # type: ignore[call-arg]
    with serve(app) as url:
        yield app.state.gateway, url


@pytest.fixture
def proxy_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(proxy.__name__)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def requests_counted(state: GatewayState, route: str, method: str, status: str) -> float:
    value = state.metrics.registry.get_sample_value(
        "gateway_requests_total", {"route": route, "method": method, "status": status}
    )
    return value or 0.0


def rows_for(database_url: str, request_id: str) -> list[Any]:
    return log_rows(database_url, f"request_id = '{request_id}'")


def test_an_unexpected_exception_is_a_500_recorded_as_500(
    served: tuple[GatewayState, str],
    gateway_db: str,
    proxy_log: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, url = served

    async def broken(_authorization: bytes | None) -> None:
        raise Boom(f"a message quoting {SECRET}")

    monkeypatch.setattr(state.identity, "resolve", broken)
    response = httpx.get(f"{url}/v1/models", headers={"X-Request-ID": "defect-7-a"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal error"}
    assert response.headers["x-request-id"] == "defect-7-a"

    errors = [r for r in proxy_log if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert "defect-7-a" in line and "Boom" in line
    assert SECRET not in line and "\n" not in line
    assert errors[0].exc_info is None

    wait_until(lambda: len(rows_for(gateway_db, "defect-7-a")) == 1)
    assert rows_for(gateway_db, "defect-7-a")[0]["status"] == 500
    assert requests_counted(state, "inference", "GET", "500") == 1
    assert requests_counted(state, "inference", "GET", "499") == 0


def test_a_failure_after_the_response_started_is_recorded_as_500(
    served: tuple[GatewayState, str],
    gateway_db: str,
    proxy_log: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, url = served
    send = proxy.Exchange.send

    async def failing_body(self: proxy.Exchange, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and self.scope["path"] == "/v1/stream":
            raise Boom(SECRET)
        await send(self, message)

    monkeypatch.setattr(proxy.Exchange, "send", failing_body)
    with pytest.raises(httpx.HTTPError):
        # The status line (200) is gone: the client can only see the body cut short.
        httpx.get(f"{url}/v1/stream", headers={"X-Request-ID": "defect-7-b"}).raise_for_status()
    wait_until(lambda: len(rows_for(gateway_db, "defect-7-b")) == 1)
    assert rows_for(gateway_db, "defect-7-b")[0]["status"] == 500
    assert requests_counted(state, "inference", "GET", "500") == 1
    assert [r.getMessage() for r in proxy_log if r.levelno >= logging.WARNING and "Boom" in r.getMessage()]


def test_a_client_that_goes_away_is_recorded_as_499(make_gateway: Callable[..., str], gateway_db: str) -> None:
    gateway = make_gateway()
    parts = urlsplit(gateway)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/upload HTTP/1.1\r\nHost: gw\r\nX-Request-ID: defect-7-gone\r\n"
            b"Content-Length: 1000\r\n\r\npart of the body"
        )
    wait_until(lambda: len(rows_for(gateway_db, "defect-7-gone")) == 1)
    assert rows_for(gateway_db, "defect-7-gone")[0]["status"] == 499
