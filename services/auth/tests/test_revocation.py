"""Revocations auth publishes to the gateway's Redis: one not-before key per event, after the commit."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from jose import jwt
from modelgate_shared.revocation import MAX_LEEWAY_SECONDS, is_revoked, session_key, subject_key

from .conftest import PASSWORD, bearer, login, make_admin, sign_up, tokens_for

NEW_PASSWORD = "another long passphrase"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings_overrides(redis_url: str, prefix: str) -> dict[str, Any]:
    return {"redis_url": redis_url, "redis_key_prefix": prefix}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """What auth_service.revocation warns (a handler of its own: create_app resets the root's)."""
    handler = Collect()
    logger = logging.getLogger("auth_service.revocation")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.get_unverified_claims(token))


def not_before(store: redis.Redis, key: str) -> int | None:
    raw = store.get(key)
    return None if raw is None else int(raw)


def assert_subject_revoked(store: redis.Redis, prefix: str, sub: str, old_token: str) -> int:
    nb = not_before(store, subject_key(prefix, sub))
    assert nb is not None, "no not-before written for the subject"
    assert is_revoked(claims(old_token)["iat"], nb)
    # Kept until every token it refuses has expired, whatever a verifier's leeway.
    assert 900 * 1000 < store.pttl(subject_key(prefix, sub)) <= (900 + MAX_LEEWAY_SECONDS + 1) * 1000
    return nb


async def test_tokens_name_their_session_and_refresh_keeps_it(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    first, second = await tokens_for(client), await tokens_for(client)
    assert claims(first["access_token"])["sid"] != claims(second["access_token"])["sid"]
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert claims(refreshed.json()["access_token"])["sid"] == claims(first["access_token"])["sid"]


async def test_password_change_revokes_the_subject_and_a_new_login_is_not(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    old = (await tokens_for(client))["access_token"]
    assert store.get(subject_key(prefix, user["id"])) is None
    changed = await client.patch(
        "/users/me", headers=bearer(old), json={"password": NEW_PASSWORD, "current_password": PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    nb = assert_subject_revoked(store, prefix, user["id"], old)
    # The answer came once the not-before second had begun: the token of the next login passes.
    fresh = (await tokens_for(client, password=NEW_PASSWORD))["access_token"]
    assert not is_revoked(claims(fresh)["iat"], nb)


async def test_profile_change_without_a_password_revokes_nothing(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    response = await client.patch("/users/me", headers=bearer(token), json={"full_name": "Alice A."})
    assert response.status_code == 200, response.text
    assert store.keys(f"{prefix}*") == []
    assert not_before(store, subject_key(prefix, user["id"])) is None


async def test_deleting_the_account_revokes_the_subject(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    assert (await client.delete("/users/me", headers=bearer(token))).status_code == 204
    assert_subject_revoked(store, prefix, user["id"], token)


async def test_admin_disable_delete_and_scope_withdrawal_revoke_the_subject(
    app: FastAPI, client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    root = await make_admin(app, client)
    bob, carol, dave = [await sign_up(client, name) for name in ("bob", "carol", "dave")]
    tokens = {name: (await tokens_for(client, name))["access_token"] for name in ("bob", "carol", "dave")}

    disabled = await client.patch(f"/users/{bob['id']}", headers=bearer(root), json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    assert_subject_revoked(store, prefix, bob["id"], tokens["bob"])

    assert (await client.delete(f"/users/{carol['id']}", headers=bearer(root))).status_code == 204
    assert_subject_revoked(store, prefix, carol["id"], tokens["carol"])

    # Adding a scope takes nothing away; withdrawing one ends the tokens that carry it.
    more = await client.patch(
        f"/users/{dave['id']}", headers=bearer(root), json={"scopes": ["predict", "models:read", "admin"]}
    )
    assert more.status_code == 200, more.text
    assert not_before(store, subject_key(prefix, dave["id"])) is None
    fewer = await client.patch(f"/users/{dave['id']}", headers=bearer(root), json={"scopes": ["models:read"]})
    assert fewer.status_code == 200, fewer.text
    assert_subject_revoked(store, prefix, dave["id"], tokens["dave"])
    # The admin's own tokens are untouched.
    assert not_before(store, subject_key(prefix, claims(root)["sub"])) is None


async def test_revoking_a_refresh_token_revokes_its_session_only(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    laptop, phone = await tokens_for(client), await tokens_for(client)
    assert (await client.post("/revoke", data={"token": laptop["refresh_token"]})).status_code == 200
    laptop_sid, phone_sid = claims(laptop["access_token"])["sid"], claims(phone["access_token"])["sid"]
    nb = not_before(store, session_key(prefix, laptop_sid))
    assert nb is not None and is_revoked(claims(laptop["access_token"])["iat"], nb)
    assert not_before(store, session_key(prefix, phone_sid)) is None
    assert not_before(store, subject_key(prefix, user["id"])) is None
    # An unknown token revokes nothing.
    assert (await client.post("/revoke", data={"token": "x" * 43})).status_code == 200
    assert len(store.keys(f"{prefix}*")) == 1


async def test_refresh_token_reuse_revokes_the_session(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    await sign_up(client)
    issued = await tokens_for(client)
    data = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    assert (await client.post("/token", data=data)).status_code == 200
    assert store.keys(f"{prefix}*") == []  # a rotation revokes nothing
    replay = await client.post("/token", data=data)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    nb = not_before(store, session_key(prefix, claims(issued["access_token"])["sid"]))
    assert nb is not None and is_revoked(claims(issued["access_token"])["iat"], nb)


async def test_a_later_revocation_never_moves_the_not_before_back(
    client: httpx.AsyncClient, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    ahead = int(time.time()) + 3600  # say, written by an auth replica whose clock runs fast
    store.set(subject_key(prefix, user["id"]), str(ahead), px=1000)
    assert (await client.delete("/users/me", headers=bearer(token))).status_code == 204
    assert not_before(store, subject_key(prefix, user["id"])) == ahead
    # ...but the key now lives as long as this revocation needs.
    assert store.pttl(subject_key(prefix, user["id"])) > 900 * 1000


@pytest.mark.parametrize("settings_overrides", [{"redis_url": f"redis://127.0.0.1:{unused_port()}/0"}])
async def test_redis_down_does_not_fail_the_users_action(client: httpx.AsyncClient, warnings: list[str]) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    changed = await client.patch(
        "/users/me", headers=bearer(token), json={"password": NEW_PASSWORD, "current_password": PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    assert any("revocation not published" in w for w in warnings), warnings
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200
    assert (await login(client)).status_code == 400


@pytest.mark.parametrize("settings_overrides", [{"redis_url": None}])
async def test_without_a_redis_url_nothing_is_published_and_start_warns(
    warnings: list[str], client: httpx.AsyncClient
) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    assert (await client.delete("/users/me", headers=bearer(token))).status_code == 204
    assert len(warnings) == 1 and "MODELGATE_AUTH_REDIS_URL is not set" in warnings[0], warnings
