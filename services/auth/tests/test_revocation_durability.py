"""Revocations survive Redis: kept in Postgres with the change that revokes, written to Redis
again periodically, deleted once every token they refuse has expired."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import redis
from auth_service.models import RevocationRecord, User
from auth_service.revocation import in_force, note_subject_revoked, republish_once
from fastapi import FastAPI
from jose import jwt
from modelgate_shared.revocation import MAX_LEEWAY_SECONDS, SESSION, SUBJECT, is_revoked, session_key, subject_key
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .conftest import PASSWORD, bearer, sign_up, tokens_for

NEW_PASSWORD = "another long passphrase"
# Generous: the loop runs every 0.2 s here, on a machine that may be very busy.
HEAL_WITHIN_SECONDS = 30.0


@pytest.fixture
def republish_seconds() -> float:
    # Long enough that no round runs during a test that calls republish_once itself.
    return 3600.0


@pytest.fixture
def settings_overrides(redis_url: str, prefix: str, republish_seconds: float) -> dict[str, Any]:
    return {"redis_url": redis_url, "redis_key_prefix": prefix, "revocation_republish_seconds": republish_seconds}


def iat(token: str) -> int:
    return int(jwt.get_unverified_claims(token)["iat"])


def sid(token: str) -> str:
    return str(jwt.get_unverified_claims(token)["sid"])


def forget_everything(store: redis.Redis, prefix: str) -> None:
    """What a Redis restart without persistence does to auth's keys."""
    keys = store.keys(f"{prefix}*")
    if keys:
        store.delete(*keys)


async def stored(app: FastAPI) -> dict[tuple[str, str], int]:
    async with app.state.auth.sessions() as session:
        rows = await session.execute(select(RevocationRecord))
        return {(r.kind, r.target): r.not_before for r in rows.scalars()}


async def change_password(client: httpx.AsyncClient, token: str) -> None:
    changed = await client.patch(
        "/users/me", headers=bearer(token), json={"password": NEW_PASSWORD, "current_password": PASSWORD}
    )
    assert changed.status_code == 200, changed.text


async def test_a_revocation_is_stored_with_its_change_and_republished_after_redis_forgot_it(
    app: FastAPI, client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    old = (await tokens_for(client))["access_token"]
    laptop = await tokens_for(client)
    await change_password(client, old)
    assert (await client.post("/revoke", data={"token": laptop["refresh_token"]})).status_code == 200
    rows = await stored(app)
    assert set(rows) == {(SUBJECT, user["id"]), (SESSION, sid(laptop["access_token"]))}
    assert is_revoked(iat(old), rows[(SUBJECT, user["id"])])

    forget_everything(store, prefix)
    assert await republish_once(app.state.auth.revocations, app.state.auth.sessions) == 2
    raw = store.get(subject_key(prefix, user["id"]))
    assert raw is not None and is_revoked(iat(old), int(raw))
    assert store.get(session_key(prefix, sid(laptop["access_token"]))) is not None
    # Kept no longer than its tokens can live.
    assert 0 < store.pttl(subject_key(prefix, user["id"])) <= (900 + MAX_LEEWAY_SECONDS + 1) * 1000
    # The next login's token is not refused by what was republished.
    fresh = (await tokens_for(client, password=NEW_PASSWORD))["access_token"]
    assert not is_revoked(iat(fresh), int(raw))


async def test_republishing_never_moves_a_not_before_back(
    app: FastAPI, client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    assert (await client.delete("/users/me", headers=bearer(token))).status_code == 204
    ahead = int(time.time()) + 3600  # a later revocation, by a replica whose clock runs fast
    store.set(subject_key(prefix, user["id"]), str(ahead), px=60_000)
    await republish_once(app.state.auth.revocations, app.state.auth.sessions)
    assert int(store.get(subject_key(prefix, user["id"])) or 0) == ahead


async def test_a_change_that_is_refused_stores_no_revocation(app: FastAPI, client: httpx.AsyncClient) -> None:
    await sign_up(client)
    await sign_up(client, "bob")
    token = (await tokens_for(client))["access_token"]
    refused = await client.patch(
        "/users/me",
        headers=bearer(token),
        json={"password": NEW_PASSWORD, "current_password": PASSWORD, "email": "bob@example.com"},
    )
    assert refused.status_code == 409, refused.text
    assert await stored(app) == {}


async def test_a_commit_that_fails_stores_no_revocation(app: FastAPI, client: httpx.AsyncClient) -> None:
    alice = await sign_up(client)
    async with app.state.auth.sessions() as session:
        note_subject_revoked(session, alice["id"])
        # A change that only fails at the final flush, inside the commit (a unique violation).
        session.add(User(username="alice", email="other@example.com", password_hash="x", scopes=[]))
        with pytest.raises(IntegrityError):
            await session.commit()
        await session.rollback()
    assert await stored(app) == {}


async def test_spent_revocations_are_pruned_and_not_republished(
    app: FastAPI, client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    now = time.time()
    spent = int(now) - (900 + MAX_LEEWAY_SECONDS + 1)  # every token it refused has expired
    alive = int(now) - 900  # a token of it may still be accepted somewhere, within its leeway
    async with app.state.auth.sessions() as session:
        session.add_all(
            [
                RevocationRecord(kind=SUBJECT, target="spent", not_before=spent),
                RevocationRecord(kind=SUBJECT, target="alive", not_before=alive),
            ]
        )
        await session.commit()
        assert [t for _, t, _ in await in_force(session, now, 900)] == ["alive"]
    assert await republish_once(app.state.auth.revocations, app.state.auth.sessions) == 1
    assert set(await stored(app)) == {(SUBJECT, "alive")}
    assert store.get(subject_key(prefix, "spent")) is None
    assert int(store.get(subject_key(prefix, "alive")) or 0) == alive


@pytest.mark.parametrize("republish_seconds", [0.2])
async def test_the_running_service_heals_redis_by_itself(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    old = (await tokens_for(client))["access_token"]
    await change_password(client, old)
    key = subject_key(prefix, user["id"])
    assert store.get(key) is not None
    forget_everything(store, prefix)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEAL_WITHIN_SECONDS
    while (raw := store.get(key)) is None:
        assert loop.time() < deadline, f"the revocation was not republished within {HEAL_WITHIN_SECONDS}s"
        await asyncio.sleep(0.05)
    assert is_revoked(iat(old), int(raw))
