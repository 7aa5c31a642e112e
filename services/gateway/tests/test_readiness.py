"""``/readyz`` says whether the gateway can serve under its settings, Redis going away and back."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from .servers import wait_until
from .tcp_proxy import TcpProxy, tcp_proxy


def _redis_target(url: str) -> tuple[str | None, int | None, str | None]:
    """Where ``url`` really listens: (host, port, None) or (None, None, unix socket path)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None, None, parts.path
    return parts.hostname, parts.port or 6379, None


@pytest.fixture
def redis_link(redis_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """The test Redis behind a link the test cuts (Redis gone) and restores (Redis back)."""
    db = urlsplit(redis_url).path.lstrip("/") if not redis_url.startswith("unix:") else "0"
    with tcp_proxy(*_redis_target(redis_url)) as link:
        yield link, f"redis://127.0.0.1:{link.port}/{db or 0}"


def _readyz(client: httpx.Client) -> httpx.Response:
    return client.get("/readyz", timeout=10)


def test_ready_while_redis_is_down_when_failing_open(
    make_gateway: Callable[..., str], redis_link: tuple[TcpProxy, str]
) -> None:
    link, url = redis_link
    gateway = make_gateway(MODELGATE_GATEWAY_REDIS_URL=url)
    with httpx.Client(base_url=gateway) as client:
        ready = _readyz(client)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": ready.json()["checks"]}
        assert ready.json()["checks"]["redis"] == "ok"

        link.stop()
        degraded = _readyz(client)
        # It serves everything (unlimited), so an orchestrator must keep sending it traffic.
        assert degraded.status_code == 200, degraded.text
        body = degraded.json()
        assert body["status"] == "ready"
        assert body["checks"]["redis"].startswith("degraded: rate limiting and token revocation not enforced")
        assert "fail-open" in body["checks"]["redis"]
        assert {k: v for k, v in body["checks"].items() if k != "redis"} == {
            k: "ok" for k in body["checks"] if k != "redis"
        }
        assert client.get("/v1/models").status_code == 200

        link.start()
        wait_until(lambda: _readyz(client).json()["checks"]["redis"] == "ok", timeout=20)


def test_not_ready_while_redis_is_down_when_failing_closed(
    make_gateway: Callable[..., str], redis_link: tuple[TcpProxy, str]
) -> None:
    link, url = redis_link
    gateway = make_gateway(MODELGATE_GATEWAY_REDIS_URL=url, MODELGATE_GATEWAY_RATE_LIMIT_FAIL_OPEN="false")
    with httpx.Client(base_url=gateway) as client:
        assert _readyz(client).status_code == 200

        link.stop()
        down = _readyz(client)
        # Every limited request is a 503 now: the gateway cannot serve.
        assert down.status_code == 503, down.text
        assert down.json()["status"] == "not ready"
        assert down.json()["checks"]["redis"].startswith("failed: ")
        assert client.get("/v1/models").status_code == 503

        link.start()
        wait_until(lambda: _readyz(client).status_code == 200, timeout=20)


def test_revocation_alone_is_named_when_rate_limiting_is_off(
    make_gateway: Callable[..., str], redis_link: tuple[TcpProxy, str]
) -> None:
    link, url = redis_link
    gateway = make_gateway(MODELGATE_GATEWAY_REDIS_URL=url, MODELGATE_GATEWAY_RATE_LIMIT_ENABLED="false")
    link.stop()
    with httpx.Client(base_url=gateway) as client:
        degraded = _readyz(client)
    assert degraded.status_code == 200, degraded.text
    assert degraded.json()["checks"]["redis"].startswith("degraded: token revocation not enforced")


def test_ready_while_an_upstream_is_down_and_no_address_is_shown(make_gateway: Callable[..., str]) -> None:
    # Nothing listens on the auth upstream's port: its routes answer 502, the rest still serve.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    gateway = make_gateway(MODELGATE_GATEWAY_AUTH_URL=f"http://127.0.0.1:{port}")
    with httpx.Client(base_url=gateway) as client:
        ready = _readyz(client)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["upstream auth"].startswith("degraded: requests to auth answer 502/503: ")
        assert checks["upstream inference"] == "ok"
        assert "127.0.0.1" not in ready.text and str(port) not in ready.text
        assert client.get("/auth/.well-known/jwks.json").status_code == 502
