"""The gateway's own endpoints (everything no route matches) behind the rate limiter (issue 10)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from gateway_service.settings import GatewaySettings
from modelgate_shared.testing import TokenSigner
from pydantic import ValidationError

from .servers import free_port

TRUST_LOCAL = '["127.0.0.1/32"]'
CLOSED = "[]"
# Two back to back, then one an hour: a third request is refused.
TWO = "2/hour"

# One path of each own-endpoint class, and the scope a token needs there (None: none needed).
OWN_ENDPOINTS = [
    pytest.param("/admin/usage", "admin", id="admin"),
    pytest.param("/docs", None, id="docs"),
    pytest.param("/docs/assets/swagger-ui-bundle.js", None, id="docs-assets"),
    pytest.param("/openapi.json", None, id="openapi"),
    pytest.param("/healthz", None, id="healthz"),
    pytest.param("/readyz", None, id="readyz"),
    pytest.param("/metrics", "admin", id="metrics-public"),
    pytest.param("/no-such-page", None, id="not-found"),
]


def _from(ip: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": ip}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@pytest.mark.parametrize(("path", "scope"), OWN_ENDPOINTS)
def test_each_own_endpoint_is_limited_with_the_proxys_429(
    path: str, scope: str | None, make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_OWN="60/hour:2", MODELGATE_GATEWAY_METRICS_ALLOW=CLOSED)
    headers = signer.auth_header(scope) if scope else {}
    with httpx.Client(base_url=gateway, headers=headers) as client:
        answers = [client.get(path) for _ in range(3)]
    first, _, limited = answers
    assert first.status_code in (200, 404), first.text
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == "60;w=3600;burst=2"
    assert "retry-after" not in first.headers
    assert limited.status_code == 429, limited.text
    assert limited.json() == {
        "error": "rate_limited",
        "detail": f"rate limit rate_limit_own exceeded; retry after {limited.headers['retry-after']}s",
    }
    assert 30 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-remaining"] == "0"
    assert limited.headers["x-request-id"]


def test_own_endpoints_key_a_token_by_sub_and_anyone_else_by_ip(
    make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_OWN=TWO, MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL)
    admin = signer.token("admin", sub="ops-1")
    with httpx.Client(base_url=gateway) as client:
        by_sub = [client.get("/admin/usage", headers=_from(f"198.51.100.{i}", admin)).status_code for i in range(3)]
        assert by_sub == [200, 200, 429]
        # Another admin, and anonymous clients, from those addresses have budgets of their own.
        other = signer.token("admin", sub="ops-2")
        assert client.get("/admin/usage", headers=_from("198.51.100.0", other)).status_code == 200
        assert client.get("/docs", headers=_from("198.51.100.0")).status_code == 200
        # A malformed token is an anonymous request: its address's bucket.
        anonymous = [client.get("/docs", headers=_from("192.0.2.9", "not-a-jwt")).status_code for _ in range(3)]
        assert anonymous == [200, 200, 429]
        assert client.get("/openapi.json", headers=_from("192.0.2.10")).status_code == 200


def test_own_and_proxied_budgets_are_apart(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_OWN=TWO, MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT=TWO)
    with httpx.Client(base_url=gateway) as client:
        assert [client.get("/docs").status_code for _ in range(3)] == [200, 200, 429]
        # Browsing the docs spent none of the API budget, and the API none of the docs'.
        assert [client.get("/v1/models").status_code for _ in range(3)] == [200, 200, 429]
        metrics = client.get("/metrics").text  # from METRICS_ALLOW (the fixture's 127.0.0.1)
    assert 'gateway_rate_limited_total{route="gateway"} 1.0' in metrics
    assert 'gateway_rate_limited_total{route="inference"} 1.0' in metrics


def test_metrics_allow_and_probe_allow_are_not_limited(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_OWN="1/hour",
        MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL,
        MODELGATE_GATEWAY_METRICS_ALLOW='["192.0.2.0/24"]',
        MODELGATE_GATEWAY_PROBE_ALLOW='["10.0.0.0/8"]',
    )
    with httpx.Client(base_url=gateway) as client:
        scrapes = [client.get("/metrics", headers=_from("192.0.2.7")) for _ in range(3)]
        assert [s.status_code for s in scrapes] == [200, 200, 200]
        assert "ratelimit-limit" not in scrapes[0].headers
        probes = [client.get(path, headers=_from("10.1.2.3")).status_code for path in ("/healthz", "/readyz") * 2]
        assert probes == [200, 200, 200, 200]
        # The allow lists exempt only their own endpoint: a probe source reading the docs is limited.
        assert [client.get("/docs", headers=_from("10.1.2.3")).status_code for _ in range(2)] == [200, 429]
        assert [client.get("/healthz", headers=_from("198.51.100.5")).status_code for _ in range(2)] == [200, 429]


def test_redis_down_failing_closed_refuses_own_endpoints_but_not_probes(
    make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        MODELGATE_GATEWAY_RATE_LIMIT_FAIL_OPEN="false",
        MODELGATE_GATEWAY_METRICS_ALLOW=CLOSED,
    )
    with httpx.Client(base_url=gateway) as client:
        admin = client.get("/admin/usage", headers=signer.auth_header("admin"))
        assert admin.status_code == 503
        assert admin.json()["error"] == "rate_limiter_unavailable"
        assert client.get("/docs").status_code == 503
        # A liveness probe must not fail (and restart the gateway) for Redis; readiness says why.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503


def test_redis_down_failing_open_serves_own_endpoints(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with httpx.Client(base_url=gateway) as client:
        docs = client.get("/docs")
    assert docs.status_code == 200
    assert "ratelimit-limit" not in docs.headers


def test_rate_limiting_off_leaves_own_endpoints_unlimited(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_OWN="1/hour", MODELGATE_GATEWAY_RATE_LIMIT_ENABLED="false")
    with httpx.Client(base_url=gateway) as client:
        assert [client.get("/docs").status_code for _ in range(3)] == [200, 200, 200]


def test_a_bad_own_policy_is_refused_at_start(gateway_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**gateway_env, "MODELGATE_GATEWAY_RATE_LIMIT_OWN": "lots"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="rate_limit_own: 'lots' is not LIMIT/PERIOD"):
        GatewaySettings()  # type: ignore[call-arg]
