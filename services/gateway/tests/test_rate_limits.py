"""Rate limiting: identities, policies, headers, the login guard and Redis failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx
import pytest
from gateway_service import ratelimit
from gateway_service.metrics import GatewayMetrics
from gateway_service.policies import Bucket, parse_policy
from gateway_service.ratelimit import Decision, GuardedLimiter, RateLimiterDown
from modelgate_shared.testing import TokenSigner
from redis.exceptions import ConnectionError as RedisConnectionError

from .servers import free_port

TRUST_LOCAL = '["127.0.0.1/32"]'


def _from(ip: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": ip}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def test_every_answer_carries_ratelimit_headers(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="60/hour:4")
    with httpx.Client(base_url=gateway) as client:
        answers = [client.get("/v1/models") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
    assert all(a.headers["ratelimit-limit"] == "4" for a in answers)
    assert answers[0].headers["ratelimit-policy"] == "60;w=3600;burst=4"
    # One request per minute refills the bucket: full again 4 minutes after the 4th request.
    assert 200 <= int(answers[3].headers["ratelimit-reset"]) <= 240
    assert "retry-after" not in answers[0].headers
    limited = answers[-1]
    # The next request is allowed one interval (60 s) after the burst began.
    assert 30 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"] == "rate_limited"
    assert "rate_limit_default" in limited.json()["detail"]


def test_verified_token_is_limited_per_user_across_ips(make_gateway: Callable[..., str], signer: TokenSigner) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="2/hour", MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL)
    token = signer.token()
    with httpx.Client(base_url=gateway) as client:
        statuses = [client.get("/v1/models", headers=_from(f"198.51.100.{i}", token)).status_code for i in range(3)]
        assert statuses == [200, 200, 429]
        # Another user, and an anonymous client, from the same addresses are not affected.
        assert client.get("/v1/models", headers=_from("198.51.100.0", signer.token())).status_code == 200
        assert client.get("/v1/models", headers=_from("198.51.100.0")).status_code == 200


def test_anonymous_clients_are_limited_per_ip(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="2/hour", MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL)
    with httpx.Client(base_url=gateway) as client:
        assert [client.get("/v1/models", headers=_from("192.0.2.1")).status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/v1/models", headers=_from("192.0.2.2")).status_code == 200


def test_invalid_token_is_not_rejected_but_counts_as_its_ip(
    make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="2/hour", MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL)
    expired = signer.token(exp=1, iat=0, nbf=0)
    wrong_audience = signer.token(aud="someone-else")
    with httpx.Client(base_url=gateway) as client:
        # The upstream decides about the token (here: the echo app accepts anything).
        first = client.get("/v1/models", headers=_from("192.0.2.7", expired))
        assert first.status_code == 200
        assert first.json()["upstream"] == "inference"
        assert client.get("/v1/models", headers=_from("192.0.2.7", wrong_audience)).status_code == 200
        assert client.get("/v1/models", headers=_from("192.0.2.7", "garbage")).status_code == 429


def test_per_user_and_per_scope_overrides(make_gateway: Callable[..., str], signer: TokenSigner) -> None:
    vip = "11111111-2222-4333-8444-555555555555"
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="1/hour",
        MODELGATE_GATEWAY_RATE_LIMIT_OVERRIDES=f'{{"user:{vip}": "4/hour", "scope:admin": "3/hour"}}',
    )
    with httpx.Client(base_url=gateway) as client:

        def count_ok(token: str) -> int:
            auth = {"Authorization": f"Bearer {token}"}
            return sum(client.get("/v1/models", headers=auth).status_code == 200 for _ in range(6))

        assert count_ok(signer.token(sub=vip, scope="predict admin")) == 4  # the user override wins
        assert count_ok(signer.token(scope="predict admin")) == 3
        assert count_ok(signer.token(scope="predict")) == 1


def test_login_guard_limits_per_username_across_ips(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME="2/hour",
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP="100/hour",
        MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL,
    )
    with httpx.Client(base_url=gateway) as client:

        def login(username: str, ip: str) -> httpx.Response:
            return client.post("/auth/token", data={"username": username, "password": "x"}, headers=_from(ip))

        first = login("Alice", "192.0.2.10")
        assert first.status_code == 200
        assert first.json() == {"upstream": "auth", "username": "Alice"}  # the form still reaches auth
        assert login("alice", "192.0.2.11").status_code == 200
        blocked = login(" ALICE ", "192.0.2.12")
        assert blocked.status_code == 429
        assert "rate_limit_login_username" in blocked.json()["detail"]
        assert login("bob", "192.0.2.12").status_code == 200
        # Other auth routes are not under the login policy.
        assert client.get("/auth/users/me", headers=_from("192.0.2.10")).status_code == 200


def test_login_guard_limits_per_ip_across_usernames(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP="3/hour", MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL
    )
    with httpx.Client(base_url=gateway) as client:
        statuses = [
            client.post(
                "/auth/token", data={"username": f"u{i}", "password": "x"}, headers=_from("192.0.2.20")
            ).status_code
            for i in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        other = client.post("/auth/token", data={"username": "u9", "password": "x"}, headers=_from("192.0.2.21"))
        assert other.status_code == 200


def test_denied_requests_are_not_charged(make_gateway: Callable[..., str]) -> None:
    """A blocked login must not also use up the IP's budget (all buckets are charged or none)."""
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME="1/hour",
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP="3/hour",
        MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL,
    )
    with httpx.Client(base_url=gateway) as client:

        def login(username: str) -> int:
            data = {"username": username, "password": "x"}
            return client.post("/auth/token", data=data, headers=_from("192.0.2.30")).status_code

        assert [login("carol") for _ in range(5)] == [200, 429, 429, 429, 429]
        assert [login("dave"), login("erin"), login("frank")] == [200, 200, 429]


def test_redis_down_fails_open_by_default(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with httpx.Client(base_url=gateway) as client:
        assert [client.get("/v1/models").status_code for _ in range(3)] == [200, 200, 200]
        metrics = client.get("/metrics").text
        assert "gateway_rate_limit_backend_errors_total 3.0" in metrics
        # It serves: ready, with the outage named (test_readiness.py).
        assert client.get("/readyz").status_code == 200


def test_redis_down_fails_closed_when_configured(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", MODELGATE_GATEWAY_RATE_LIMIT_FAIL_OPEN="false"
    )
    response = httpx.get(f"{gateway}/v1/models")
    assert response.status_code == 503
    assert response.json()["error"] == "rate_limiter_unavailable"


ALLOWED = Decision(
    allowed=True, policy=parse_policy("1/minute", "p"), remaining=0, reset_seconds=60, retry_after_seconds=0
)


class FlakyLimiter:
    """Stands in for RateLimiter: Redis either answers or is down."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def check(self, buckets: Sequence[Bucket], identity: object = None) -> Decision:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("connection refused")
        return ALLOWED


def _guarded(fail_open: bool) -> tuple[GuardedLimiter, FlakyLimiter, Callable[[], float | None]]:
    metrics = GatewayMetrics()
    redis = FlakyLimiter()
    guarded = GuardedLimiter(redis, fail_open=fail_open, errors=metrics.rate_limit_backend_errors)  # type: ignore[arg-type]
    return guarded, redis, lambda: metrics.registry.get_sample_value("gateway_rate_limit_backend_errors_total")


async def test_guarded_limiter_fails_open_and_leaves_a_dead_redis_alone_for_a_while() -> None:
    guarded, redis, errors = _guarded(fail_open=True)
    assert [await guarded.decide([]) for _ in range(3)] == [None, None, None]
    assert redis.calls == 1  # one failed call, then REDIS_RETRY_SECONDS without trying
    assert errors() == 3


async def test_guarded_limiter_fails_closed_when_set() -> None:
    guarded, redis, errors = _guarded(fail_open=False)
    for _ in range(2):
        with pytest.raises(RateLimiterDown):
            await guarded.decide([])
    assert redis.calls == 1 and errors() == 2


async def test_guarded_limiter_asks_redis_again_after_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 0.0)
    guarded, redis, errors = _guarded(fail_open=True)
    assert await guarded.decide([]) is None
    redis.down = False
    assert await guarded.decide([]) is ALLOWED
    assert redis.calls == 2 and errors() == 1
