"""Unified OpenAPI/docs and Prometheus metrics."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from .servers import free_port


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
