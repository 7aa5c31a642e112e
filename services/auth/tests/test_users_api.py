from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from auth_service.issuing import AccessTokenRequest, issue_access_token
from auth_service.models import Login, RefreshToken, User
from fastapi import FastAPI
from sqlalchemy import func, select, update

from .conftest import AUDIENCE, ISSUER, PASSWORD, bearer, login, sign_up, tokens_for


async def test_sign_up_returns_the_user_without_the_hash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users",
        json={"username": "Alice", "password": PASSWORD, "email": "Alice@Example.com", "full_name": "Alice A."},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["full_name"] == "Alice A."
    assert body["scopes"] == ["predict", "models:read"]
    assert body["disabled"] is False
    assert not any("hash" in key or key == "password" for key in body)
    assert PASSWORD not in response.text


@pytest.mark.parametrize(
    ("username", "email", "field"),
    [
        ("ALICE", "other@example.com", "username"),
        ("\uff21lice", "other@example.com", "username"),  # full-width A: same name after NFKC
        ("bob", "ALICE@example.com", "email"),
    ],
)
async def test_sign_up_conflicts_name_the_taken_field(
    client: httpx.AsyncClient, username: str, email: str, field: str
) -> None:
    await sign_up(client, "alice")
    response = await client.post("/users", json={"username": username, "password": PASSWORD, "email": email})
    assert response.status_code == 409
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"password": "short"}, "password", "at least 10 characters"),
        ({"password": "x" * 1025}, "password", "at most 1024 characters"),
        ({"password": " " * 12}, "password", "whitespace"),
        ({"email": "not-an-email"}, "email", "email"),
        ({"username": "a b"}, "username", "username must be"),
        ({"username": "ab"}, "username", "username must be"),
        ({"unexpected": 1}, "unexpected", "Extra inputs"),
    ],
)
async def test_sign_up_validation_names_the_bad_field(
    client: httpx.AsyncClient, override: dict[str, object], field: str, message: str
) -> None:
    body = {"username": "alice", "password": PASSWORD, "email": "alice@example.com", **override}
    response = await client.post("/users", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == field and message.lower() in e["msg"].lower() for e in errors), errors


async def test_long_passwords_sharing_72_bytes_do_not_both_work(client: httpx.AsyncClient) -> None:
    base = "p" * 72
    await sign_up(client, "alice", base + "-one")
    assert (await login(client, "alice", base + "-one")).status_code == 200
    assert (await login(client, "alice", base + "-two")).status_code == 400


async def test_me_requires_a_valid_bearer_token(client: httpx.AsyncClient) -> None:
    missing = await client.get("/users/me")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    garbage = await client.get("/users/me", headers=bearer("not.a.jwt"))
    assert garbage.status_code == 401


async def test_read_and_update_me(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    me = await client.get("/users/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]
    patched = await client.patch(
        "/users/me", headers=bearer(token), json={"email": "NEW@example.com", "full_name": "Alice Liddell"}
    )
    assert patched.status_code == 200
    assert patched.json()["email"] == "new@example.com"
    assert patched.json()["full_name"] == "Alice Liddell"


async def test_email_change_to_a_taken_address_is_409(client: httpx.AsyncClient) -> None:
    await sign_up(client, "alice")
    await sign_up(client, "bob")
    token = (await tokens_for(client, "alice"))["access_token"]
    response = await client.patch("/users/me", headers=bearer(token), json={"email": "bob@example.com"})
    assert response.status_code == 409
    assert "email" in response.json()["detail"]


async def test_password_change_needs_the_current_one(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    missing = await client.patch("/users/me", headers=bearer(token), json={"password": "a brand new password"})
    assert missing.status_code == 422
    assert "current_password" in missing.json()["detail"]
    wrong = await client.patch(
        "/users/me",
        headers=bearer(token),
        json={"password": "a brand new password", "current_password": "not my password"},
    )
    assert wrong.status_code == 403
    assert (await login(client)).status_code == 200


async def test_password_change_revokes_sessions(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    old = await tokens_for(client)
    response = await client.patch(
        "/users/me",
        headers=bearer(old["access_token"]),
        json={"password": "a brand new password", "current_password": PASSWORD},
    )
    assert response.status_code == 200
    refreshed = await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": old["refresh_token"]})
    assert refreshed.status_code == 400
    assert (await login(client, "alice", PASSWORD)).status_code == 400
    assert (await login(client, "alice", "a brand new password")).status_code == 200
    async with app.state.auth.sessions() as session:
        reasons = set(await session.scalars(select(RefreshToken.revoked_reason)))
    assert "password_changed" in reasons


async def test_access_tokens_issued_before_a_password_change_are_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client)
    state = app.state.auth
    earlier = datetime.now(UTC) - timedelta(seconds=60)
    request = AccessTokenRequest(ISSUER, AUDIENCE, uuid.UUID(user["id"]), "alice", ("predict",), 900)
    stale = issue_access_token(state.ring.signing, request, earlier)
    async with state.sessions() as session:
        await session.execute(update(User).values(password_changed_at=earlier + timedelta(seconds=5)))
        await session.commit()
    response = await client.get("/users/me", headers=bearer(stale))
    assert response.status_code == 401
    assert "password change" in response.json()["detail"]


async def test_delete_me_removes_the_user_and_their_data(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    await login(client, "alice", "wrong password!")
    issued = await tokens_for(client)
    response = await client.delete("/users/me", headers=bearer(issued["access_token"]))
    assert response.status_code == 204
    async with app.state.auth.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0
        assert await session.scalar(select(func.count()).select_from(RefreshToken)) == 0
        assert await session.scalar(select(func.count()).select_from(Login).where(Login.user_id.is_not(None))) == 0
    # The token outlives the account, but the account is gone.
    assert (await client.get("/users/me", headers=bearer(issued["access_token"]))).status_code == 401
    assert (await login(client)).status_code == 400


async def test_my_logins_lists_attempts_newest_first(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    await login(client, "alice", "wrong password!")
    token = (await tokens_for(client))["access_token"]
    response = await client.get("/users/me/logins", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    assert [(i["success"], i["reason"]) for i in body["items"]] == [(True, "ok"), (False, "wrong_password")]
    assert body["items"][0]["client_ip"] == "127.0.0.1"
    page = await client.get("/users/me/logins", headers=bearer(token), params={"limit": 1, "offset": 1})
    assert [i["reason"] for i in page.json()["items"]] == ["wrong_password"]
    bad = await client.get("/users/me/logins", headers=bearer(token), params={"limit": 0})
    assert bad.status_code == 422
