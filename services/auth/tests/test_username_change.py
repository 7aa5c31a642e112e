"""Issue 12: a user (or an admin, or the CLI) changes a username; the old one stays reserved."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from auth_service.housekeeping import prune
from auth_service.models import Login, User, UsernameReservation
from fastapi import FastAPI
from modelgate_shared.tokens import TokenVerifier
from sqlalchemy import func, select, text, update

from .conftest import PASSWORD, bearer, login, sign_up, tokens_for

NEW_PASSWORD = "a brand new password"


async def rename_me(
    client: httpx.AsyncClient, token: str, username: str, current_password: str | None = PASSWORD, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"username": username, **extra}
    if current_password is not None:
        body["current_password"] = current_password
    return await client.patch("/users/me", headers=bearer(token), json=body)


async def signed_in(client: httpx.AsyncClient, username: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the new user, its token response)."""
    user = await sign_up(client, username)
    return user, await tokens_for(client, username)


def assert_taken(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "username is already taken"}


async def backdate_reservation(app: FastAPI, username: str) -> None:
    """The grace period of ``username`` ends now (as if its days had passed)."""
    async with app.state.auth.sessions() as session:
        await session.execute(
            update(UsernameReservation)
            .where(UsernameReservation.username == username)
            .values(reserved_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()


# -- the user's own rename -------------------------------------------------------------------------


async def test_rename_keeps_the_id_and_the_new_name_logs_in(client: httpx.AsyncClient) -> None:
    user, issued = await signed_in(client, "alice")
    response = await rename_me(client, issued["access_token"], "  Alicia.L ")
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "alicia.l"  # sign-up's normal form
    assert response.json()["id"] == user["id"]
    assert (await tokens_for(client, "alicia.l"))["scope"] == issued["scope"]
    # The token issued before the rename still works: the sub did not change.
    me = await client.get("/users/me", headers=bearer(issued["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "alicia.l"


async def test_rename_needs_the_current_password(client: httpx.AsyncClient) -> None:
    _, issued = await signed_in(client, "alice")
    missing = await rename_me(client, issued["access_token"], "alicia", current_password=None)
    assert missing.status_code == 422
    assert missing.json()["detail"] == "current_password is required to change the username"
    wrong = await rename_me(client, issued["access_token"], "alicia", current_password="not my password")
    assert wrong.status_code == 403
    assert wrong.json()["detail"] == "current_password is incorrect"
    assert (await tokens_for(client, "alice"))["access_token"]
    assert (await login(client, "alicia")).status_code == 400


async def test_the_same_name_in_another_spelling_changes_nothing(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, issued = await signed_in(client, "alice")
    # No password needed for what is no change, and no event recorded.
    response = await rename_me(client, issued["access_token"], "ALICE", current_password=None)
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "alice"
    async with app.state.auth.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UsernameReservation)) == 0
        assert await session.scalar(select(func.count()).where(Login.event == "username_changed")) == 0


@pytest.mark.parametrize("bad", ["ab", "a b", "-alice", "x" * 65, "al\x00ice", "al\u202eice"])
async def test_an_invalid_name_is_422_naming_the_field(client: httpx.AsyncClient, bad: str) -> None:
    _, issued = await signed_in(client, "alice")
    response = await rename_me(client, issued["access_token"], bad)
    assert response.status_code == 422, response.text
    assert any(e["loc"][-1] == "username" for e in response.json()["detail"])
    assert (await client.get("/users/me", headers=bearer(issued["access_token"]))).json()["username"] == "alice"


@pytest.mark.parametrize("taken", ["bob", "BOB", " Bob ", "\uff42\uff4f\uff42"])  # full-width: same after NFKC
async def test_a_taken_name_is_409_in_any_spelling(client: httpx.AsyncClient, taken: str) -> None:
    await sign_up(client, "bob")
    _, issued = await signed_in(client, "alice")
    assert_taken(await rename_me(client, issued["access_token"], taken))
    assert (await login(client, "alice")).status_code == 200


async def test_a_refused_rename_changes_nothing_else_in_the_request(client: httpx.AsyncClient) -> None:
    await sign_up(client, "bob")
    _, issued = await signed_in(client, "alice")
    response = await rename_me(
        client, issued["access_token"], "bob", password=NEW_PASSWORD, full_name="Alice", email="new@example.com"
    )
    assert_taken(response)
    me = (await client.get("/users/me", headers=bearer(issued["access_token"]))).json()
    assert (me["username"], me["email"], me["full_name"]) == ("alice", "alice@example.com", None)
    assert (await login(client, "alice", PASSWORD)).status_code == 200


async def test_rename_and_password_change_in_one_request(client: httpx.AsyncClient) -> None:
    _, issued = await signed_in(client, "alice")
    response = await rename_me(client, issued["access_token"], "alicia", password=NEW_PASSWORD)
    assert response.status_code == 200, response.text
    assert (await login(client, "alicia", NEW_PASSWORD)).status_code == 200
    assert (await login(client, "alicia", PASSWORD)).status_code == 400


async def test_the_old_name_is_refused_like_an_unknown_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, issued = await signed_in(client, "alice")
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    old = await login(client, "alice")
    unknown = await login(client, "nobody-at-all")
    assert old.status_code == unknown.status_code == 400
    assert (
        old.json() == unknown.json() == {"error": "invalid_grant", "error_description": "invalid username or password"}
    )
    # Recorded as an unknown name is (no name, no account): the old name's login takes the
    # unknown user's path, dummy hash included, so its answer and its time say nothing.
    async with app.state.auth.sessions() as session:
        rows = (await session.execute(select(Login.user_id, Login.username, Login.reason).order_by(Login.id))).all()
    assert [tuple(r) for r in rows[-2:]] == [(None, None, "unknown_user"), (None, None, "unknown_user")]


async def test_the_rename_is_an_event_in_both_login_histories(client: httpx.AsyncClient, admin_token: str) -> None:
    user, issued = await signed_in(client, "alice")
    response = await client.patch(
        "/users/me",
        headers={**bearer(issued["access_token"]), "User-Agent": "rename-test/1"},
        json={"username": "alicia", "current_password": PASSWORD},
    )
    assert response.status_code == 200
    mine = (await client.get("/users/me/logins", headers=bearer(issued["access_token"]))).json()
    seen_by_admin = (await client.get(f"/users/{user['id']}/logins", headers=bearer(admin_token))).json()
    assert mine["items"] == seen_by_admin["items"]
    event, sign_in = mine["items"]
    assert (event["event"], event["username"], event["previous_username"]) == ("username_changed", "alicia", "alice")
    assert (event["success"], event["reason"], event["grant_type"]) == (True, "user", None)
    assert (event["client_ip"], event["user_agent"]) == ("127.0.0.1", "rename-test/1")
    assert (sign_in["event"], sign_in["username"], sign_in["previous_username"]) == ("token", "alice", None)


# -- tokens ------------------------------------------------------------------------------------------


async def test_an_old_token_shows_the_old_name_until_refreshed(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    user, issued = await signed_in(client, "alice")
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    before = await verifier.verify(issued["access_token"])
    assert (before.sub, before.username) == (user["id"], "alice")
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    after = await verifier.verify(refreshed.json()["access_token"])
    assert (after.sub, after.username) == (user["id"], "alicia")


# -- the grace period --------------------------------------------------------------------------------


async def test_the_old_name_is_reserved_from_everyone_else(client: httpx.AsyncClient) -> None:
    _, issued = await signed_in(client, "alice")
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    for spelling in ("alice", "ALICE", "\uff41lice"):
        signup = await client.post(
            "/users", json={"username": spelling, "password": PASSWORD, "email": "mallory@example.com"}
        )
        assert_taken(signup)
    _, bob = await signed_in(client, "bob")
    assert_taken(await rename_me(client, bob["access_token"], "Alice"))


async def test_the_same_user_may_take_the_old_name_back(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, issued = await signed_in(client, "alice")
    token = issued["access_token"]
    assert (await rename_me(client, token, "alicia")).status_code == 200
    back = await rename_me(client, token, "alice")
    assert back.status_code == 200, back.text
    assert back.json()["username"] == "alice"
    # Now the name given up is "alicia": reserved in turn; "alice" is the account's again.
    async with app.state.auth.sessions() as session:
        assert list(await session.scalars(select(UsernameReservation.username))) == ["alicia"]
    _, bob = await signed_in(client, "bob")
    assert_taken(await rename_me(client, bob["access_token"], "alicia"))


async def test_the_old_name_is_free_once_the_grace_period_is_over(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, issued = await signed_in(client, "alice")
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    assert_taken(
        await client.post("/users", json={"username": "alice", "password": PASSWORD, "email": "m@example.com"})
    )
    await backdate_reservation(app, "alice")
    taken = await client.post("/users", json={"username": "alice", "password": PASSWORD, "email": "m@example.com"})
    assert taken.status_code == 201, taken.text
    assert taken.json()["username"] == "alice"


async def test_the_reservation_lasts_the_configured_days(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, issued = await signed_in(client, "alice")
    before = datetime.now(UTC)
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    async with app.state.auth.sessions() as session:
        row = await session.scalar(select(UsernameReservation))
    assert row is not None
    assert row.username == "alice"
    assert before + timedelta(days=30) <= row.reserved_until <= datetime.now(UTC) + timedelta(days=30)


@pytest.mark.parametrize("settings_overrides", [{"username_reuse_grace_days": 0}])
async def test_a_grace_of_zero_days_frees_the_name_at_once(client: httpx.AsyncClient) -> None:
    _, issued = await signed_in(client, "alice")
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    await sign_up(client, "alice", email="another.alice@example.com")


async def test_prune_deletes_reservations_past_their_grace(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, alice = await signed_in(client, "alice")
    _, bob = await signed_in(client, "bob")
    assert (await rename_me(client, alice["access_token"], "alicia")).status_code == 200
    assert (await rename_me(client, bob["access_token"], "robert")).status_code == 200
    await backdate_reservation(app, "alice")
    async with app.state.auth.sessions() as session:
        assert (await prune(session, datetime.now(UTC), timedelta(days=90), 900))[2] == 1
        assert list(await session.scalars(select(UsernameReservation.username))) == ["bob"]


async def test_deleting_the_account_frees_its_old_names(client: httpx.AsyncClient) -> None:
    _, issued = await signed_in(client, "alice")
    assert (await rename_me(client, issued["access_token"], "alicia")).status_code == 200
    assert (await client.delete("/users/me", headers=bearer(issued["access_token"]))).status_code == 204
    await sign_up(client, "alice")


# -- races ---------------------------------------------------------------------------------------------


async def test_two_renames_racing_to_one_name_one_gets_409(client: httpx.AsyncClient, app: FastAPI) -> None:
    """The second rename passes the lookup while the first is uncommitted: the unique constraint
    decides (a 409, not a 500), and the first keeps the name."""
    alice, _ = await signed_in(client, "alice")
    bob_user, bob = await signed_in(client, "bob")
    state = app.state.auth
    async with state.sessions() as first:
        # Alice's rename, held open: the name is in the index but not committed.
        await first.execute(update(User).where(User.username == "alice").values(username="target"))
        second = asyncio.create_task(rename_me(client, bob["access_token"], "target"))
        async with state.sessions() as watcher:
            # Wait until bob's UPDATE is blocked on alice's uncommitted row.
            for _ in range(600):
                waiting = await watcher.scalar(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
                )
                await watcher.rollback()
                if waiting or second.done():
                    break
                await asyncio.sleep(0.05)
        assert not second.done(), (await second).text
        await first.commit()
    assert_taken(await second)
    async with state.sessions() as session:
        names = {str(i): name for i, name in await session.execute(select(User.id, User.username))}
    assert names == {alice["id"]: "target", bob_user["id"]: "bob"}


# -- the admin ----------------------------------------------------------------------------------------


async def test_an_admin_renames_a_user(client: httpx.AsyncClient, admin_token: str, verifier: TokenVerifier) -> None:
    user, issued = await signed_in(client, "alice")
    await sign_up(client, "bob")
    response = await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"username": "Alicia"})
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["username"]) == (user["id"], "alicia")
    assert (await login(client, "alice")).json()["error"] == "invalid_grant"
    assert (await tokens_for(client, "alicia"))["access_token"]
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    )
    assert (await verifier.verify(refreshed.json()["access_token"])).username == "alicia"
    # The same rules as the user's own rename.
    assert_taken(await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"username": "BOB"}))
    bob = await client.post("/users", json={"username": "alice", "password": PASSWORD, "email": "x@example.com"})
    assert_taken(bob)
    bad = await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"username": "a b"})
    assert bad.status_code == 422
    history = (await client.get(f"/users/{user['id']}/logins", headers=bearer(admin_token))).json()["items"]
    events = [
        (i["event"], i["previous_username"], i["username"], i["reason"]) for i in history if i["event"] != "token"
    ]
    assert events == [("username_changed", "alice", "alicia", "admin")]


async def test_renaming_through_the_admin_api_needs_the_admin_scope(client: httpx.AsyncClient) -> None:
    user, issued = await signed_in(client, "alice")
    response = await client.patch(
        f"/users/{user['id']}", headers=bearer(issued["access_token"]), json={"username": "alicia"}
    )
    assert response.status_code == 403
    assert (await login(client, "alice")).status_code == 200


async def test_an_admin_renaming_an_unknown_user_gets_404(client: httpx.AsyncClient, admin_token: str) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    response = await client.patch(f"/users/{missing}", headers=bearer(admin_token), json={"username": "alicia"})
    assert response.status_code == 404
