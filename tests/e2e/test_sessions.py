"""Refresh tokens through the gateway: rotated on every use, a reused one kills its family."""

from __future__ import annotations

import httpx

from ..conftest import bearer, password_login, sign_up


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def test_refresh_returns_a_new_working_pair(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    username, password, user_id = await sign_up(client)
    first = await password_login(client, username, password)

    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    # Tokens must not be cached by anything between the client and auth.
    assert "no-store" in response.headers["cache-control"]
    second = response.json()
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == first["scope"]
    me = await client.get("/auth/users/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user_id

    # The new refresh token rotates in turn.
    third = await refresh(client, second["refresh_token"])
    assert third.status_code == 200, third.text
    assert third.json()["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


async def test_reusing_a_rotated_token_revokes_its_whole_family(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    username, password, _ = await sign_up(client)
    session = await password_login(client, username, password)
    other_session = await password_login(client, username, password)

    rotated = await refresh(client, session["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newest = rotated.json()["refresh_token"]

    # The old token is refused...
    assert_invalid_grant(await refresh(client, session["refresh_token"]))
    # ...and its coming back means it was copied: the newest token of the family dies too.
    assert_invalid_grant(await refresh(client, newest))
    # Only that family: the user's other session (another login) goes on.
    other = await refresh(client, other_session["refresh_token"])
    assert other.status_code == 200, other.text

    # That session's access token is refused now too (its sid is revoked at the gateway); the
    # other session's fresh one reads the login history, which tells the two refusals apart.
    revoked = await client.get("/auth/users/me", headers=bearer(session["access_token"]))
    assert revoked.status_code == 401, revoked.text
    history = await client.get("/auth/users/me/logins", headers=bearer(other.json()["access_token"]))
    assert history.status_code == 200, history.text
    refresh_attempts = [
        (row["success"], row["reason"]) for row in history.json()["items"] if row["grant_type"] == "refresh_token"
    ]
    # Newest first.
    assert refresh_attempts == [
        (True, "ok"),
        (False, "refresh_token_revoked"),
        (False, "refresh_token_reuse"),
        (True, "ok"),
    ]


async def test_revoked_refresh_token_is_refused(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    username, password, _ = await sign_up(client)
    session = await password_login(client, username, password)

    revoked = await client.post(
        "/auth/revoke", data={"token": session["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert revoked.status_code == 200, revoked.text
    assert_invalid_grant(await refresh(client, session["refresh_token"]))
