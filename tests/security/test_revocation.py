"""Revocation through the whole stack (issue 10, defect 9): an access token must not outlive its account.

Each event that ends a user's or a session's rights makes auth write a not-before time to Redis,
and the gateway refuses older tokens in the same round trip as its rate-limit decision. Before
that, the old token kept predicting until it expired (15 minutes): inference trusts a token's
signature and claims until ``exp``.
"""

from __future__ import annotations

import uuid

import httpx
from modelgate_shared.stack import Stack

from ..conftest import bearer, eventually, password_login, sign_up

PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
# The contract: "within seconds". Auth publishes before it answers, so it is at once in practice.
WITHIN_SECONDS = 5.0


async def predict(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=bearer(token))


async def assert_predicts(client: httpx.AsyncClient, token: str) -> None:
    response = await predict(client, token)
    assert response.status_code == 200, response.text


async def refused_at_the_gateway(client: httpx.AsyncClient, token: str, what: str) -> None:
    """Poll until the gateway refuses ``token`` as revoked (its own 401, before any upstream)."""

    async def refused() -> httpx.Response | None:
        response = await predict(client, token)
        return response if response.status_code == 401 else None

    response = await eventually(refused, f"{what}: the old token refused", within=WITHIN_SECONDS)
    assert response.json() == {"error": "invalid_token", "detail": "token revoked"}
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def user_with_token(client: httpx.AsyncClient) -> tuple[str, str, str, dict[str, str]]:
    """A new user who has predicted once: (username, password, user id, token response)."""
    username, password, user_id = await sign_up(client)
    tokens = await password_login(client, username, password)
    await assert_predicts(client, tokens["access_token"])
    return username, password, user_id, tokens


def test_the_launcher_gives_auth_the_gateways_redis(stack: Stack) -> None:
    env = stack.env()
    assert stack.redis is not None
    assert env["MODELGATE_AUTH_REDIS_URL"] == env["MODELGATE_GATEWAY_REDIS_URL"] == stack.redis.url


async def test_password_change_ends_the_old_token_and_a_new_login_works(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    username, password, _, tokens = await user_with_token(client)
    new_password = f"pw-{uuid.uuid4().hex}"
    changed = await client.patch(
        "/auth/users/me",
        headers=bearer(tokens["access_token"]),
        json={"password": new_password, "current_password": password},
    )
    assert changed.status_code == 200, changed.text
    await refused_at_the_gateway(client, tokens["access_token"], "password change")
    # Straight after the change (no wait on the client's side): the new token works.
    fresh = await password_login(client, username, new_password)
    await assert_predicts(client, fresh["access_token"])


async def test_admin_disable_ends_the_token_and_enable_lets_the_user_back(
    own_ip_client: httpx.AsyncClient, gateway: httpx.AsyncClient, admin_token: str
) -> None:
    client = own_ip_client
    username, password, user_id, tokens = await user_with_token(client)
    disabled = await gateway.patch(f"/auth/users/{user_id}", headers=bearer(admin_token), json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    await refused_at_the_gateway(client, tokens["access_token"], "admin disable")
    login = await client.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": password}
    )
    assert login.status_code == 400 and login.json()["error"] == "invalid_grant"

    enabled = await gateway.patch(f"/auth/users/{user_id}", headers=bearer(admin_token), json={"disabled": False})
    assert enabled.status_code == 200, enabled.text
    await assert_predicts(client, (await password_login(client, username, password))["access_token"])
    # The admin's own token is untouched by what it did to others.
    assert (await gateway.get("/auth/users", headers=bearer(admin_token))).status_code == 200


async def test_admin_delete_ends_the_token(
    own_ip_client: httpx.AsyncClient, gateway: httpx.AsyncClient, admin_token: str
) -> None:
    client = own_ip_client
    username, password, user_id, tokens = await user_with_token(client)
    deleted = await gateway.delete(f"/auth/users/{user_id}", headers=bearer(admin_token))
    assert deleted.status_code == 204, deleted.text
    await refused_at_the_gateway(client, tokens["access_token"], "admin delete")
    login = await client.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": password}
    )
    assert login.status_code == 400


async def test_deleting_ones_own_account_ends_the_token(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    _, _, _, tokens = await user_with_token(client)
    deleted = await client.delete("/auth/users/me", headers=bearer(tokens["access_token"]))
    assert deleted.status_code == 204, deleted.text
    await refused_at_the_gateway(client, tokens["access_token"], "DELETE /users/me")


async def test_revoking_a_session_ends_its_token_and_only_its_own(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    username, password, _, laptop = await user_with_token(client)
    phone = await password_login(client, username, password)
    revoked = await client.post(
        "/auth/revoke", data={"token": laptop["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert revoked.status_code == 200, revoked.text
    await refused_at_the_gateway(client, laptop["access_token"], "session revoke")
    # The user's other session goes on, and so does a new one.
    await assert_predicts(client, phone["access_token"])
    await assert_predicts(client, (await password_login(client, username, password))["access_token"])


async def test_refresh_token_reuse_ends_the_sessions_access_token(own_ip_client: httpx.AsyncClient) -> None:
    client = own_ip_client
    _, _, _, tokens = await user_with_token(client)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = await client.post("/auth/token", data=form)
    assert rotated.status_code == 200, rotated.text
    # A rotation is no revocation: the older access token of the session still works.
    await assert_predicts(client, tokens["access_token"])
    replayed = await client.post("/auth/token", data=form)
    assert replayed.status_code == 400, replayed.text
    # The copied refresh token's session is over: both its access tokens with it.
    await refused_at_the_gateway(client, tokens["access_token"], "refresh-token reuse")
    await refused_at_the_gateway(client, rotated.json()["access_token"], "refresh-token reuse (rotated)")
