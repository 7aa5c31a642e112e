from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from auth_service.housekeeping import prune
from auth_service.models import Login, RefreshToken
from auth_service.passwords import PasswordHasher
from fastapi import FastAPI
from jose import jwt
from modelgate_shared.tokens import InvalidToken, TokenVerifier
from sqlalchemy import select, update

from .conftest import AUDIENCE, ISSUER, PASSWORD, login, sign_up, tokens_for


async def test_password_grant_issues_token_the_shared_verifier_accepts(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    user = await sign_up(client)
    response = await login(client)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "predict models:read"
    assert len(body["refresh_token"]) >= 43  # 256 bits, base64url
    claims = await verifier.verify(body["access_token"])
    assert claims.sub == user["id"]
    assert claims.username == "alice"
    assert claims.scopes == {"predict", "models:read"}
    assert claims.expires_at - claims.issued_at == 900
    assert claims.raw["nbf"] == claims.issued_at


async def test_token_response_shape(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    response = await login(client)
    assert response.status_code == 200, response.text
    body = response.json()
    # RFC 6749 5.1, and nothing else.
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "predict models:read"
    # Opaque, not a JWT: /revoke tells the two apart by the dots.
    assert isinstance(body["refresh_token"], str) and "." not in body["refresh_token"]

    header = jwt.get_unverified_header(body["access_token"])
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert set(header) == {"alg", "typ", "kid"}
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert header["kid"] in published

    claims = jwt.get_unverified_claims(body["access_token"])
    assert set(claims) == {"iss", "aud", "sub", "preferred_username", "scope", "iat", "nbf", "exp", "jti", "sid"}
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == user["id"]
    assert claims["preferred_username"] == "alice"
    assert claims["scope"] == body["scope"]
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert isinstance(claims["jti"], str) and claims["jti"]
    # The session: the refresh-token family, which a revocation of the session names.
    assert str(uuid.UUID(claims["sid"])) == claims["sid"]


async def test_username_is_case_insensitive_at_login(client: httpx.AsyncClient) -> None:
    await sign_up(client, "Alice")
    assert (await login(client, "ALICE")).status_code == 200


async def test_unknown_user_and_wrong_password_get_the_same_answer(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    wrong = await login(client, "alice", "not the password at all")
    unknown = await login(client, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 400
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "invalid_grant",
            "error_description": "invalid username or password",
        }
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
    ],
)
async def test_malformed_token_requests_get_rfc6749_errors(
    client: httpx.AsyncClient, data: dict[str, str], error: str
) -> None:
    response = await client.post("/token", data=data)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


async def test_requested_scope_narrows_the_token_and_must_be_granted(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    await sign_up(client)
    narrowed = await login(client, scope="predict")
    assert narrowed.status_code == 200
    assert (await verifier.verify(narrowed.json()["access_token"])).scopes == {"predict"}
    widened = await login(client, scope="predict admin")
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": token})


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient, verifier: TokenVerifier) -> None:
    await sign_up(client)
    first = await tokens_for(client)
    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    await verifier.verify(rotated["access_token"])

    # The first token again: a replay. It fails, and so does the legitimate newer token.
    replay = await refresh(client, first["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    after = await refresh(client, rotated["refresh_token"])
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


async def test_reuse_revokes_only_that_family(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    laptop = await tokens_for(client)
    phone = await tokens_for(client)
    assert (await refresh(client, laptop["refresh_token"])).status_code == 200
    assert (await refresh(client, laptop["refresh_token"])).status_code == 400
    assert (await refresh(client, phone["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    issued = await tokens_for(client)
    async with app.state.auth.sessions() as session:
        hashes = list(await session.scalars(select(RefreshToken.token_hash)))
    assert len(hashes) == 1
    assert issued["refresh_token"] not in hashes[0]
    assert len(hashes[0]) == 64


async def test_unknown_refresh_token_is_invalid_grant(client: httpx.AsyncClient) -> None:
    response = await refresh(client, "x" * 43)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_revoke_ends_the_session(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    issued = await tokens_for(client)
    response = await client.post("/revoke", data={"token": issued["refresh_token"]})
    assert response.status_code == 200
    assert (await refresh(client, issued["refresh_token"])).status_code == 400
    # RFC 7009: unknown tokens are not an error.
    assert (await client.post("/revoke", data={"token": "unknown"})).status_code == 200
    missing = await client.post("/revoke", data={})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


async def test_every_attempt_is_recorded_in_logins(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_up(client)
    await login(client, "alice", "wrong password!!")
    await login(client, "ghost", PASSWORD)
    issued = await tokens_for(client)
    await refresh(client, issued["refresh_token"])
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login).order_by(Login.id)))
    summary = [(r.username, r.user_id, r.success, r.reason, r.grant_type) for r in rows]
    alice = uuid.UUID(user["id"])
    # An unknown name is not recorded: it may be a password typed into the wrong field.
    assert summary == [
        ("alice", alice, False, "wrong_password", "password"),
        (None, None, False, "unknown_user", "password"),
        ("alice", alice, True, "ok", "password"),
        ("alice", alice, True, "ok", "refresh_token"),
    ]
    assert all(str(r.client_ip) == "127.0.0.1" for r in rows)


async def test_login_records_forwarded_client_ip_from_trusted_proxy(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    await client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "User-Agent": "tests/1.0"},
    )
    async with app.state.auth.sessions() as session:
        row = await session.scalar(select(Login))
    assert row is not None
    assert str(row.client_ip) == "198.51.100.7"
    assert row.user_agent == "tests/1.0"


async def test_access_token_is_rejected_by_a_verifier_for_another_audience(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    await sign_up(client)
    issued = await tokens_for(client)
    other = TokenVerifier(verifier.keys, issuer=verifier.issuer, audience="another-api")
    with pytest.raises(InvalidToken):
        await other.verify(issued["access_token"])


async def test_concurrent_use_of_one_refresh_token_is_treated_as_reuse(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    issued = await tokens_for(client)
    results = await asyncio.gather(*(refresh(client, issued["refresh_token"]) for _ in range(2)))
    assert sorted(r.status_code for r in results) == [200, 400]
    winner = next(r for r in results if r.status_code == 200).json()
    # The race revoked the family, so even the winner's new token is dead.
    assert (await refresh(client, winner["refresh_token"])).status_code == 400


async def test_malformed_attempts_are_recorded_too(client: httpx.AsyncClient, app: FastAPI) -> None:
    await client.post("/token", data={"grant_type": "authorization_code", "username": "mallory"})
    await client.post("/token", data={"grant_type": "password", "username": "mallory"})
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login).order_by(Login.id)))
    assert [(r.username, r.grant_type, r.success, r.reason) for r in rows] == [
        (None, "authorization_code", False, "unsupported_grant_type"),
        (None, "password", False, "invalid_request"),
    ]


async def test_prune_deletes_expired_tokens_and_old_logins(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    first = await tokens_for(client)
    second = await refresh(client, first["refresh_token"])
    state = app.state.auth
    async with state.sessions() as session:
        # Age the first (rotated) token and one login past their limits.
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.replaced_by_id.is_not(None))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        oldest = await session.scalar(select(Login.id).order_by(Login.id).limit(1))
        await session.execute(update(Login).where(Login.id == oldest).values(at=datetime.now(UTC) - timedelta(days=91)))
        await session.commit()
        assert (await prune(session, datetime.now(UTC), timedelta(days=90), 900))[:3] == (1, 1, 0)
    # The live token still works.
    assert (await refresh(client, second.json()["refresh_token"])).status_code == 200


def hold_password_checks(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Semaphore]:
    """Make each password check wait, in its hashing thread, until ``release`` is set;
    ``entered`` is released as each one starts."""
    release, entered = threading.Event(), threading.Semaphore(0)
    real = hasher.verify_sync

    def held(password: str, hashed: str | None) -> tuple[bool, str | None]:
        entered.release()
        assert release.wait(10)
        return real(password, hashed)

    monkeypatch.setattr(hasher, "verify_sync", held)
    return release, entered


async def test_logins_beyond_the_hashing_queue_get_a_fast_rfc6749_503(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_up(client)
    hasher = app.state.auth.hasher
    monkeypatch.setattr(hasher, "max_pending", 1)
    release, entered = hold_password_checks(hasher, monkeypatch)
    first = asyncio.create_task(login(client))
    try:
        assert await asyncio.to_thread(entered.acquire, True, 10)
        busy = await login(client)
        busy_sign_up = await client.post(
            "/users", json={"username": "bob", "password": PASSWORD, "email": "bob@example.com"}
        )
    finally:
        release.set()
    assert (await first).status_code == 200
    assert busy.status_code == 503
    assert busy.json()["error"] == "temporarily_unavailable"
    assert "retry" in busy.json()["error_description"]
    assert int(busy.headers["retry-after"]) >= 1
    assert busy.headers["cache-control"] == "no-store"
    assert busy_sign_up.status_code == 503 and int(busy_sign_up.headers["retry-after"]) >= 1
    async with app.state.auth.sessions() as session:
        reasons = list(await session.scalars(select(Login.reason).order_by(Login.id)))
    # Refused attempts are in the login history like any other.
    assert sorted(reasons) == ["hashing_busy", "ok"]
    # Once the queue drains, logins work again.
    assert (await login(client)).status_code == 200


async def test_a_login_holds_no_database_connection_while_the_password_is_hashed(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_up(client)
    hasher, engine = app.state.auth.hasher, app.state.auth.engine
    release, entered = hold_password_checks(hasher, monkeypatch)
    pending = asyncio.create_task(login(client))
    try:
        assert await asyncio.to_thread(entered.acquire, True, 10)
        # A storm of logins would otherwise pin every pooled connection for the hash's duration.
        in_use_while_hashing = engine.pool.checkedout()
    finally:
        release.set()
    response = await pending
    assert in_use_while_hashing == 0
    assert response.status_code == 200
    async with app.state.auth.sessions() as session:
        reasons = list(await session.scalars(select(Login.reason)))
    assert reasons == ["ok"]
