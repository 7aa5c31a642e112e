"""Metrics are for operators (issue 10, defect 10): never on the public URL unauthenticated."""

from __future__ import annotations

import httpx
from modelgate_shared.stack import Stack

from ..conftest import METRICS_PORT, METRICS_SCRAPER_ADDRESS, bearer, fresh_client_ip, signup_and_login


async def test_public_metrics_need_an_admin_token(gateway: httpx.AsyncClient, admin_token: str) -> None:
    anonymous = await gateway.get("/metrics")
    assert anonymous.status_code == 401
    assert "gateway_requests_total" not in anonymous.text
    _, user_token = await signup_and_login(gateway)
    assert (await gateway.get("/metrics", headers=bearer(user_token))).status_code == 403
    admin = await gateway.get("/metrics", headers=bearer(admin_token))
    assert admin.status_code == 200
    assert "gateway_requests_total" in admin.text


async def test_public_metrics_answer_an_allowed_network(stack: Stack, proxy: httpx.AsyncClient) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=METRICS_SCRAPER_ADDRESS)
    async with httpx.AsyncClient(base_url=stack.gateway_url, transport=transport, timeout=30) as operator:
        assert (await operator.get("/metrics")).status_code == 200
    # Through the trusted proxy, the client it names is who counts, not the proxy.
    forwarded = await proxy.get("/metrics", headers={"X-Forwarded-For": fresh_client_ip()})
    assert forwarded.status_code == 401


async def test_prometheus_scrapes_the_metrics_port(gateway: httpx.AsyncClient) -> None:
    await gateway.get("/healthz")
    assert (await gateway.get("/v2/health/live")).status_code == 200
    async with httpx.AsyncClient(timeout=30) as prometheus:
        scrape = await prometheus.get(f"http://127.0.0.1:{METRICS_PORT}/metrics")
    assert scrape.status_code == 200
    assert 'gateway_requests_total{method="GET",route="inference",status="200"}' in scrape.text
