from __future__ import annotations

from typing import Any

import httpx
from auth_service.issuing import ADMIN_SCOPES

from .conftest import bearer, login, sign_up, tokens_for


async def test_admin_routes_need_the_admin_scope(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    for method, path in [("GET", "/users"), ("GET", f"/users/{user['id']}"), ("DELETE", f"/users/{user['id']}")]:
        response = await client.request(method, path, headers=bearer(token))
        assert response.status_code == 403, (method, path)
        assert "admin" in response.json()["detail"]
    assert (await client.get("/users")).status_code == 401


async def test_list_users_is_paginated(client: httpx.AsyncClient, admin_token: str) -> None:
    for name in ("alice", "bob", "carol"):
        await sign_up(client, name)
    first = await client.get("/users", headers=bearer(admin_token), params={"limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert body["total"] == 4
    assert len(body["items"]) == 2
    rest = await client.get("/users", headers=bearer(admin_token), params={"limit": 2, "offset": 2})
    names = [u["username"] for u in body["items"] + rest.json()["items"]]
    assert sorted(names) == ["alice", "bob", "carol", "root"]


async def test_disable_blocks_login_and_refresh_and_enable_restores(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    user = await sign_up(client)
    issued = await tokens_for(client)
    response = await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"disabled": True})
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    assert (await login(client)).json()["error"] == "invalid_grant"
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    )
    assert refreshed.status_code == 400
    assert (await client.get("/users/me", headers=bearer(issued["access_token"]))).status_code == 401
    await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"disabled": False})
    assert (await login(client)).status_code == 200


async def test_change_scopes(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    response = await client.patch(
        f"/users/{user['id']}", headers=bearer(admin_token), json={"scopes": ["models:read", "predict"]}
    )
    assert response.json()["scopes"] == ["predict", "models:read"]
    narrowed = await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"scopes": ["predict"]})
    assert narrowed.json()["scopes"] == ["predict"]
    assert (await tokens_for(client))["scope"] == "predict"
    bad = await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"scopes": ["root"]})
    assert bad.status_code == 422
    assert "unknown scope" in bad.text


async def test_removed_scopes_do_not_survive_a_refresh(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    issued = await tokens_for(client)
    await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"scopes": ["models:read"]})
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["scope"] == "models:read"


async def test_admin_cannot_lock_themselves_out(client: httpx.AsyncClient, admin_token: str) -> None:
    me = (await client.get("/users/me", headers=bearer(admin_token))).json()
    for body in ({"disabled": True}, {"scopes": ["predict"]}):
        response = await client.patch(f"/users/{me['id']}", headers=bearer(admin_token), json=body)
        assert response.status_code == 409
    assert (await client.delete(f"/users/{me['id']}", headers=bearer(admin_token))).status_code == 409


async def test_delete_and_read_any_user(client: httpx.AsyncClient, admin_token: str) -> None:
    user: dict[str, Any] = await sign_up(client)
    await login(client, "alice", "wrong password!")
    read = await client.get(f"/users/{user['id']}", headers=bearer(admin_token))
    assert read.json()["username"] == "alice"
    logins = await client.get(f"/users/{user['id']}/logins", headers=bearer(admin_token))
    assert logins.status_code == 200
    assert [i["reason"] for i in logins.json()["items"]] == ["wrong_password"]
    assert (await client.delete(f"/users/{user['id']}", headers=bearer(admin_token))).status_code == 204
    assert (await client.get(f"/users/{user['id']}", headers=bearer(admin_token))).status_code == 404
    assert (await client.get("/users/not-a-uuid", headers=bearer(admin_token))).status_code == 422


async def test_revoked_admin_right_takes_effect_before_token_expiry(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    other = await sign_up(client, "second")
    await client.patch(f"/users/{other['id']}", headers=bearer(admin_token), json={"scopes": list(ADMIN_SCOPES)})
    second_token = (await tokens_for(client, "second"))["access_token"]
    assert (await client.get("/users", headers=bearer(second_token))).status_code == 200
    await client.patch(f"/users/{other['id']}", headers=bearer(admin_token), json={"scopes": ["predict"]})
    assert (await client.get("/users", headers=bearer(second_token))).status_code == 403
