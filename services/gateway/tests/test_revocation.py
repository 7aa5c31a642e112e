"""Revoked tokens: refused with 401 before forwarding, decided in the rate-limit script's one round trip."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from gateway_service.app import create_app
from gateway_service.identity import ANONYMOUS, Identity, IdentityResolver
from gateway_service.ratelimit import revocation_check
from gateway_service.settings import GatewaySettings
from modelgate_shared.revocation import KEEP_LATEST_LUA, encode, key_ttl_ms, session_key, subject_key
from modelgate_shared.testing import TokenSigner
from modelgate_shared.tokens import FileKeySource, TokenVerifier

from .conftest import AUDIENCE, ISSUER, log_rows
from .servers import free_port, serve

TRUST_LOCAL = '["127.0.0.1/32"]'


@pytest.fixture
def prefix(gateway_env: dict[str, str]) -> str:
    return gateway_env["MODELGATE_GATEWAY_REDIS_KEY_PREFIX"]


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def revoke(store: redis.Redis, key: str, not_before: int) -> None:
    """What auth writes (modelgate_shared.revocation), with auth's own script."""
    store.eval(KEEP_LATEST_LUA, 1, key, encode(not_before), key_ttl_ms(900))


def bearer(token: str, ip: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if ip:
        headers["X-Forwarded-For"] = ip
    return headers


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_token", "detail": "token revoked"}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge and "revoked" in challenge
    assert "ratelimit-remaining" not in response.headers


def test_a_token_issued_before_the_subjects_not_before_is_refused(
    gateway: str, signer: TokenSigner, store: redis.Redis, prefix: str, gateway_db: str
) -> None:
    sub = str(uuid.uuid4())
    now = int(time.time())
    old = signer.token(sub=sub, iat=now - 60, nbf=now - 60)
    revoke(store, subject_key(prefix, sub), now - 30)
    newer = signer.token(sub=sub, iat=now - 30, nbf=now - 30)  # issued in the not-before second: valid
    other_user = signer.token(iat=now - 60, nbf=now - 60)
    with httpx.Client(base_url=gateway) as client:
        for path in ("/v1/models/diabetes/predict", "/auth/users/me"):
            assert_revoked(client.post(path, headers=bearer(old)))
        assert client.post("/v1/models/diabetes/predict", headers=bearer(newer)).status_code == 200
        assert client.post("/v1/models/diabetes/predict", headers=bearer(other_user)).status_code == 200
    # Refused before forwarding: no upstream in the log rows of the refusals.
    rows: list[Any] = []
    deadline = time.monotonic() + 10
    while len(rows) < 4 and time.monotonic() < deadline:
        rows = log_rows(gateway_db)
        time.sleep(0.05)
    assert [(r["status"], r["upstream"] is None) for r in rows] == [
        (401, True),
        (401, True),
        (200, False),
        (200, False),
    ]


@pytest.mark.parametrize("limiting", ["true", "false"])
def test_a_revoked_admin_token_is_refused_on_the_gateways_own_endpoints(
    make_gateway: Callable[..., str], signer: TokenSigner, store: redis.Redis, prefix: str, limiting: str
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_ENABLED=limiting)
    sub = str(uuid.uuid4())
    now = int(time.time())
    old = signer.token(sub=sub, scope="admin", iat=now - 60, nbf=now - 60)
    with httpx.Client(base_url=gateway) as client:
        assert client.get("/admin/usage", headers=bearer(old)).status_code == 200
        revoke(store, subject_key(prefix, sub), now - 30)
        for path in ("/admin/usage", "/admin/request-log"):
            assert_revoked(client.get(path, headers=bearer(old)))
        fresh = signer.token(sub=sub, scope="admin")
        assert client.get("/admin/usage", headers=bearer(fresh)).status_code == 200


def test_a_revoked_session_ends_only_that_sessions_tokens(
    gateway: str, signer: TokenSigner, store: redis.Redis, prefix: str
) -> None:
    sub, laptop, phone = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    now = int(time.time())
    revoke(store, session_key(prefix, laptop), now + 1)
    # iat pinned: a token issued after the clock reached now + 1 would rightly be valid.
    laptop_token = signer.token(sub=sub, sid=laptop, iat=now, nbf=now)
    with httpx.Client(base_url=gateway) as client:
        assert_revoked(client.get("/v1/models", headers=bearer(laptop_token)))
        assert client.get("/v1/models", headers=bearer(signer.token(sub=sub, sid=phone))).status_code == 200
        # A token without a sid (another issuer's, an older auth's) is checked against its subject only.
        assert client.get("/v1/models", headers=bearer(signer.token(sub=sub, sid=None))).status_code == 200


def test_revoked_requests_do_not_use_up_the_owners_limit(
    make_gateway: Callable[..., str], signer: TokenSigner, store: redis.Redis, prefix: str
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="2/hour", MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL)
    sub = str(uuid.uuid4())
    now = int(time.time())
    stolen = signer.token(sub=sub, iat=now - 60, nbf=now - 60)
    revoke(store, subject_key(prefix, sub), now)
    fresh = signer.token(sub=sub)
    with httpx.Client(base_url=gateway) as client:
        for i in range(5):
            assert_revoked(client.get("/v1/models", headers=bearer(stolen, f"198.51.100.{i}")))
        statuses = [client.get("/v1/models", headers=bearer(fresh)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_revocation_is_checked_with_rate_limiting_off(
    make_gateway: Callable[..., str], signer: TokenSigner, store: redis.Redis, prefix: str
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_ENABLED="false")
    sub = str(uuid.uuid4())
    now = int(time.time())
    revoke(store, subject_key(prefix, sub), now + 1)
    with httpx.Client(base_url=gateway) as client:
        assert_revoked(client.get("/v1/models", headers=bearer(signer.token(sub=sub))))
        ok = client.get("/v1/models", headers=bearer(signer.token()))
        assert ok.status_code == 200 and "ratelimit-limit" not in ok.headers
        assert client.get("/v1/models").status_code == 200


def test_a_revoked_token_sent_along_to_the_token_endpoint_does_not_block_a_login(
    gateway: str, signer: TokenSigner, store: redis.Redis, prefix: str
) -> None:
    sub = str(uuid.uuid4())
    revoke(store, subject_key(prefix, sub), int(time.time()) + 1)
    with httpx.Client(base_url=gateway) as client:
        response = client.post(
            "/auth/token", data={"username": "alice", "password": "x"}, headers=bearer(signer.token(sub=sub))
        )
    assert response.status_code == 200 and response.json()["upstream"] == "auth"


def test_redis_down_fails_open_and_revocation_goes_unchecked(
    make_gateway: Callable[..., str], signer: TokenSigner
) -> None:
    """Documented: with no Redis to ask, a revoked token passes until it expires (or 503, failing closed)."""
    gateway = make_gateway(MODELGATE_GATEWAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert httpx.get(f"{gateway}/v1/models", headers=bearer(signer.token())).status_code == 200


def test_one_redis_round_trip_decides_revocation_and_limits(
    gateway_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    signer: TokenSigner,
    store: redis.Redis,
    prefix: str,
) -> None:
    for key, value in gateway_env.items():
        monkeypatch.setenv(key, value)
    app = create_app(GatewaySettings())  # type: ignore[call-arg]
    sub = str(uuid.uuid4())
    now = int(time.time())
    old = signer.token(sub=sub, iat=now - 60, nbf=now - 60)
    with serve(app) as gateway, httpx.Client(base_url=gateway) as client:
        state = app.state.gateway
        commands: list[str] = []
        original = state.redis.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            commands.append(str(args[0]))
            return await original(*args, **kwargs)

        monkeypatch.setattr(state.redis, "execute_command", counting)
        assert client.get("/v1/models", headers=bearer(old)).status_code == 200  # loads the script
        revoke(store, subject_key(prefix, sub), now)
        for headers, status in ((bearer(old), 401), (bearer(signer.token(sub=sub)), 200), ({}, 200)):
            commands.clear()
            assert client.get("/v1/models", headers=headers).status_code == status
            assert commands == ["EVALSHA"], headers


def test_revocation_keys_are_the_subjects_and_the_sessions() -> None:
    assert revocation_check("p:", ANONYMOUS) == ([], 0)
    assert revocation_check("p:", None) == ([], 0)
    assert revocation_check("p:", Identity("u-1", frozenset(), 1700000000)) == (["p:revoked:sub:u-1"], 1700000000)
    with_session = Identity("u-1", frozenset(), 1700000000, "s-1")
    assert revocation_check("p:", with_session) == (["p:revoked:sub:u-1", "p:revoked:sid:s-1"], 1700000000)


async def test_the_identity_carries_the_tokens_iat_and_session(signer: TokenSigner, public_keys: Path) -> None:
    resolver = IdentityResolver(TokenVerifier(FileKeySource(public_keys), issuer=ISSUER, audience=AUDIENCE))
    now = int(time.time())
    identity = await resolver.resolve(f"Bearer {signer.token(sub='u-1', sid='s-1', iat=now - 5)}".encode())
    assert (identity.sub, identity.issued_at, identity.session_id) == ("u-1", now - 5, "s-1")
    assert (await resolver.resolve(None)).issued_at is None
