"""Unified OpenAPI/docs and Prometheus metrics (for operators only)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from gateway_service import metrics_listener
from gateway_service.metrics import GatewayMetrics, scraper_allowed
from gateway_service.metrics_listener import answer
from modelgate_shared.proxies import parse_networks
from modelgate_shared.testing import TokenSigner

from .servers import free_port, gateway_process

CLOSED = "[]"  # MODELGATE_GATEWAY_METRICS_ALLOW as deployed by default: nobody without a token


def test_openapi_merges_upstreams_as_the_gateway_exposes_them(gateway: str) -> None:
    spec = httpx.get(f"{gateway}/openapi.json").json()
    paths = spec["paths"]
    assert "/auth/token" in paths  # auth's /token, behind the stripped prefix
    assert "/token" not in paths
    assert "/admin/request-log" in paths
    # Inference's own /healthz is not reachable through /v1/ or /v2/, so it is not listed.
    assert "/upload" not in paths
    assert paths["/auth/token"]["post"]["tags"] == ["auth"]


def test_openapi_still_serves_when_an_upstream_is_down(make_gateway: Callable[..., str], auth_upstream: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(
        MODELGATE_GATEWAY_ROUTES=json.dumps(
            [
                {"prefix": "/auth/", "upstreams": [auth_upstream], "strip_prefix": True, "name": "auth"},
                {"prefix": "/v1/", "upstreams": [dead]},
            ]
        )
    )
    response = httpx.get(f"{gateway}/openapi.json")
    assert response.status_code == 200
    assert "/auth/token" in response.json()["paths"]


def test_docs_page_points_at_the_merged_spec(gateway: str) -> None:
    page = httpx.get(f"{gateway}/docs")
    assert page.status_code == 200
    assert "/openapi.json" in page.text and "swagger" in page.text.lower()


def test_docs_page_loads_everything_from_the_gateway(gateway: str) -> None:
    """Offline, a CDN's Swagger UI is a blank page (tests/e2e/test_docs_browser.py renders it)."""
    with httpx.Client(base_url=gateway) as client:
        page = client.get("/docs")
        # No other origin anywhere in the page, and the browser is told to allow none.
        assert "//" not in page.text.replace("<!DOCTYPE html>", "")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
        assert "script-src 'self' 'sha256-" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(sources) == 3
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 100
            again = client.get(source, headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304
        types = {source.rsplit(".", 1)[-1]: client.get(source).headers["content-type"] for source in sources}
        assert types == {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "png": "image/png"}
        assert client.get("/docs/assets/__init__.py").status_code == 404
        # There is no second docs page that would still need a CDN.
        assert client.get("/redoc").status_code == 404


def test_metrics_count_requests_by_route_and_status(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="2/hour")
    with httpx.Client(base_url=gateway) as client:
        for _ in range(3):
            client.get("/v1/models")
        text = client.get("/metrics").text
    assert 'gateway_requests_total{method="GET",route="inference",status="200"} 2.0' in text
    assert 'gateway_requests_total{method="GET",route="inference",status="429"} 1.0' in text
    assert 'gateway_rate_limited_total{route="inference"} 1.0' in text
    assert 'gateway_request_duration_seconds_count{route="inference"} 3.0' in text
    assert "gateway_log_queue_depth" in text


def test_metrics_on_the_public_url_need_an_admin_token_by_default(
    make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_METRICS_ALLOW=CLOSED)
    with httpx.Client(base_url=gateway) as client:
        client.get("/v1/models")
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "gateway_" not in anonymous.text
        assert client.get("/metrics", headers=signer.auth_header("predict models:read")).status_code == 403
        admin = client.get("/metrics", headers=signer.auth_header("admin"))
    assert admin.status_code == 200
    assert 'gateway_requests_total{method="GET",route="inference",status="200"} 1.0' in admin.text
    assert admin.headers["cache-control"] == "no-store"


def test_metrics_allow_list_matches_the_client_behind_a_trusted_proxy(make_gateway: Callable[..., str]) -> None:
    # The proxy (127.0.0.1) is inside an allowed network itself: only the client it names counts.
    gateway = make_gateway(
        MODELGATE_GATEWAY_TRUSTED_PROXIES='["127.0.0.1/32"]',
        MODELGATE_GATEWAY_METRICS_ALLOW='["127.0.0.0/8", "192.0.2.0/24"]',
    )

    def scrape(forwarded_for: str) -> int:
        return httpx.get(f"{gateway}/metrics", headers={"X-Forwarded-For": forwarded_for}).status_code

    assert scrape("192.0.2.7") == 200
    assert scrape("198.51.100.1") == 401
    assert scrape("192.0.2.7, 198.51.100.1") == 401  # the hop our proxy added is the client
    assert scrape("not-an-ip") == 401  # no fallback to the (allowed) proxy's own address


def test_a_client_cannot_claim_an_allowed_address(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_METRICS_ALLOW='["192.0.2.0/24"]')  # no trusted proxies
    assert httpx.get(f"{gateway}/metrics", headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 401


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.1.2.3", [], True),
        ("203.0.113.9", [], False),
        ("203.0.113.9", [(b"x-forwarded-for", b"10.1.2.3")], False),  # not a trusted proxy: its claim is ignored
        ("192.0.2.1", [(b"x-forwarded-for", b"10.1.2.3")], True),
        ("192.0.2.1", [(b"x-forwarded-for", b"10.1.2.3, 203.0.113.9")], False),
        ("192.0.2.1", [(b"x-forwarded-for", b"garbage")], False),
        ("unknown", [], False),
    ],
)
def test_scraper_allowed(peer: str, forwarded: list[tuple[bytes, bytes]], expected: bool) -> None:
    trusted = parse_networks(["192.0.2.1"])
    allowed = parse_networks(["10.0.0.0/8"])
    assert scraper_allowed(peer, forwarded, trusted, allowed) is expected


def test_the_metrics_listener_serves_prometheus_without_a_token(make_gateway: Callable[..., str]) -> None:
    port = free_port()
    gateway = make_gateway(MODELGATE_GATEWAY_METRICS_ALLOW=CLOSED, MODELGATE_GATEWAY_METRICS_PORT=str(port))
    httpx.get(f"{gateway}/v1/models")
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=")
    assert 'gateway_requests_total{method="GET",route="inference",status="200"} 1.0' in scrape.text
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 404  # nothing but the metrics
    assert httpx.post(f"http://127.0.0.1:{port}/metrics").status_code == 405
    assert httpx.get(f"{gateway}/metrics").status_code == 401  # the public URL stays closed


def test_the_metrics_listener_answers_requests_as_prometheus_sends_them() -> None:
    registry = GatewayMetrics().registry
    ok = answer(b"GET /metrics?x=1 HTTP/1.1\r\nHost: gw:9464\r\nAccept: text/plain\r\n\r\n", registry)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and b"gateway_log_rows_written_total" in ok
    head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", registry)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert answer(b"GET /metrics\r\n\r\n", registry).startswith(b"HTTP/1.1 400 ")
    assert answer(b"\r\n\r\n", registry).startswith(b"HTTP/1.1 400 ")


async def test_the_metrics_listener_drops_slow_and_surplus_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = metrics_listener.MetricsListener(GatewayMetrics().registry, "127.0.0.1", free_port())
    await listener.start()

    async def unfinished_request() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        await writer.drain()
        return reader, writer

    async def closed_by_the_server(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:  # closed with our unread request in its buffer
            return True

    try:
        # A deadline far away: a surplus connection is closed by the cap, not by the deadline.
        monkeypatch.setattr(metrics_listener, "EXCHANGE_TIMEOUT_SECONDS", 60)
        held = [await unfinished_request() for _ in range(metrics_listener.MAX_CONNECTIONS)]
        await asyncio.sleep(0.2)
        surplus, _ = await unfinished_request()
        assert await closed_by_the_server(surplus)
        for _, writer in held:
            writer.close()

        monkeypatch.setattr(metrics_listener, "EXCHANGE_TIMEOUT_SECONDS", 0.5)
        slow, _ = await unfinished_request()
        assert await closed_by_the_server(slow)  # past the deadline

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200 OK")
    finally:
        await listener.close()


def test_a_taken_metrics_port_stops_the_gateway_naming_the_setting(gateway_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {**gateway_env, "MODELGATE_GATEWAY_METRICS_PORT": str(busy.getsockname()[1])}
        with (
            pytest.raises(AssertionError, match="MODELGATE_GATEWAY_METRICS_PORT: cannot listen"),
            gateway_process(env, tmp_path / "gw.log"),
        ):
            pass
