"""Issue 12 through the gateway: a user renames themselves (or an admin renames them); the id
stays, the new name logs in, and the old one is refused like any unknown name while it stays
reserved to its account for the grace period."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import Stack
from modelgate_shared.tokens import AccessClaims, FileKeySource, TokenVerifier

from ..conftest import SECRETS, bearer, password_login, sign_up

TAKEN = {"detail": "username is already taken"}


def new_name() -> str:
    return f"renamed-{uuid.uuid4().hex[:10]}"


async def rename_me(client: httpx.AsyncClient, token: str, username: str, password: str) -> httpx.Response:
    return await client.patch(
        "/auth/users/me", headers=bearer(token), json={"username": username, "current_password": password}
    )


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"grant_type": "password", "username": username, "password": password})


async def sign_up_as(client: httpx.AsyncClient, username: str) -> httpx.Response:
    password = f"pw-{uuid.uuid4().hex}"
    SECRETS.add("password", password)
    return await client.post(
        "/auth/users",
        json={"username": username, "password": password, "email": f"{uuid.uuid4().hex[:12]}@example.com"},
    )


@pytest.fixture
def claims_of(stack: Stack) -> TokenVerifier:
    """Reads an access token as the gateway does: the stack's published keys, its issuer and audience."""
    return TokenVerifier(
        FileKeySource(stack.public_jwks, refresh_interval=0), issuer=stack.issuer, audience=stack.settings.audience
    )


async def test_rename_then_the_new_name_logs_in_and_the_old_is_unknown(
    own_ip_client: httpx.AsyncClient, claims_of: TokenVerifier
) -> None:
    client = own_ip_client
    old, password, user_id = await sign_up(client)
    issued = await password_login(client, old, password)
    new = new_name()

    response = await rename_me(client, issued["access_token"], new.upper(), password)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["username"]) == (user_id, new)

    fresh = await password_login(client, new, password)
    claims: AccessClaims = await claims_of.verify(fresh["access_token"])
    assert (claims.sub, claims.username) == (user_id, new)
    # The old name answers exactly as a name that never existed.
    refused = await login(client, old, password)
    unknown = await login(client, new_name(), password)
    assert refused.status_code == unknown.status_code == 400
    assert refused.json() == unknown.json()
    assert refused.json()["error"] == "invalid_grant"


async def test_a_token_shows_the_old_name_until_refreshed(
    own_ip_client: httpx.AsyncClient, claims_of: TokenVerifier
) -> None:
    client = own_ip_client
    old, password, user_id = await sign_up(client)
    issued = await password_login(client, old, password)
    new = new_name()
    assert (await rename_me(client, issued["access_token"], new, password)).status_code == 200

    # The token issued before the rename keeps working (same sub) and keeps its old name.
    me = await client.get("/auth/users/me", headers=bearer(issued["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == new
    assert (await claims_of.verify(issued["access_token"])).username == old
    refreshed = await client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    claims = await claims_of.verify(refreshed.json()["access_token"])
    assert (claims.sub, claims.username) == (user_id, new)


async def test_renaming_to_a_taken_name_is_409_in_any_spelling(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    other, _, _ = await sign_up(client)
    mine, password, _ = await sign_up(client)
    token = (await password_login(client, mine, password))["access_token"]
    for spelling in (other, other.upper(), f" {other.title()} "):
        response = await rename_me(client, token, spelling, password)
        assert response.status_code == 409, response.text
        assert response.json() == TAKEN
    assert (await login(client, mine, password)).status_code == 200


async def test_the_old_name_stays_reserved_for_the_grace_period(own_ip_client: httpx.AsyncClient, stack: Stack) -> None:
    client = own_ip_client
    old, password, user_id = await sign_up(client)
    token = (await password_login(client, old, password))["access_token"]
    new = new_name()
    assert (await rename_me(client, token, new, password)).status_code == 200

    # Nobody else can take it, by sign-up or by rename, in any spelling.
    for spelling in (old, old.upper()):
        taken = await sign_up_as(client, spelling)
        assert taken.status_code == 409, taken.text
        assert taken.json() == TAKEN
    someone, their_password, _ = await sign_up(client)
    their_token = (await password_login(client, someone, their_password))["access_token"]
    renamed = await rename_me(client, their_token, old, their_password)
    assert renamed.status_code == 409
    assert renamed.json() == TAKEN

    # Its own account may take it back; then the name it gave up is the reserved one.
    back = await rename_me(client, token, old, password)
    assert back.status_code == 200, back.text
    assert back.json()["username"] == old
    assert (await sign_up_as(client, new)).json() == TAKEN

    # The grace period over (its end moved to the past in auth's database), the name is free.
    assert stack.postgres is not None
    conn = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    try:
        moved = await conn.execute(
            "UPDATE username_reservations SET reserved_until = now() - interval '1 second' "
            "WHERE username = $1 AND user_id = $2",
            new,
            uuid.UUID(user_id),
        )
    finally:
        await conn.close()
    assert moved == "UPDATE 1"
    free = await sign_up_as(client, new)
    assert free.status_code == 201, free.text


async def test_an_admin_renames_a_user(own_ip_client: httpx.AsyncClient, admin_token: str) -> None:
    client = own_ip_client
    old, password, user_id = await sign_up(client)
    await password_login(client, old, password)
    other, _, _ = await sign_up(client)
    new = new_name()

    conflict = await client.patch(f"/auth/users/{user_id}", headers=bearer(admin_token), json={"username": other})
    assert conflict.status_code == 409
    assert conflict.json() == TAKEN
    response = await client.patch(f"/auth/users/{user_id}", headers=bearer(admin_token), json={"username": new})
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["username"]) == (user_id, new)

    assert (await login(client, new, password)).status_code == 200
    assert (await login(client, old, password)).json() == (await login(client, new_name(), password)).json()
    assert (await sign_up_as(client, old)).json() == TAKEN
    # The rename is in the user's login history, with who did it.
    history = await client.get(f"/auth/users/{user_id}/logins", headers=bearer(admin_token))
    assert history.status_code == 200
    events = [
        (i["event"], i["previous_username"], i["username"], i["reason"])
        for i in history.json()["items"]
        if i["event"] != "token"
    ]
    assert events == [("username_changed", old, new, "admin")]
