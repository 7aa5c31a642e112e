"""Password guessing against one account: the gateway's per-username login limit.

Default policy ``10/minute:5``: five attempts back to back, then one every six seconds. The
test runs behind the trusted proxy with an address of its own, so the per-IP login bucket it
fills is its own too (a 429 charges no bucket, only allowed attempts do).
"""

from __future__ import annotations

import unicodedata
import uuid
from urllib.parse import urlencode

import httpx
import pytest

from ..conftest import bearer, eventually, sign_up

BURST = 5
USERNAME_POLICY = "10;w=60;burst=5"


async def attempt(
    client: httpx.AsyncClient, username: str, password: str, request_id: str | None = None
) -> httpx.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return await client.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": password}, headers=headers
    )


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    # The username's policy, not the address's (60;w=60;burst=30), is what ran out.
    assert response.headers["ratelimit-policy"] == USERNAME_POLICY


async def test_a_guessed_username_is_limited_and_others_are_not(
    own_ip_client: httpx.AsyncClient, own_ip: str, gateway: httpx.AsyncClient, admin_token: str
) -> None:
    client = own_ip_client
    victim, password, victim_id = await sign_up(client)
    other, other_password, _ = await sign_up(client)

    for n in range(BURST):
        response = await attempt(client, victim, f"guess-{n}-{uuid.uuid4().hex}")
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_grant"
    limited_id = f"e2e-login-guard-{uuid.uuid4().hex[:8]}"
    assert_limited(await attempt(client, victim, "one guess too many", limited_id))

    # The limit is checked before the password: the right one waits too...
    assert_limited(await attempt(client, victim, password))
    # ...under any spelling auth takes for the same account...
    assert_limited(await attempt(client, victim.upper(), password))
    # ...and from any address.
    assert_limited(await attempt(gateway, victim, password))

    # Another account, from the very same address, is not held up.
    response = await attempt(client, other, other_password)
    assert response.status_code == 200, response.text

    # Auth saw only the attempts the gateway let through.
    logins = await gateway.get(f"/auth/users/{victim_id}/logins", headers=bearer(admin_token))
    assert logins.status_code == 200, logins.text
    history = logins.json()
    assert history["total"] == BURST
    assert {(row["reason"], row["client_ip"]) for row in history["items"]} == {("wrong_password", own_ip)}

    # The gateway logged the refusal as rate limited, answered without an upstream.
    async def limited_row() -> dict | None:
        response = await gateway.get(
            "/admin/request-log", params={"status": 429, "path": "/auth/token"}, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        return next((row for row in response.json()["items"] if row["request_id"] == limited_id), None)

    row = await eventually(limited_row, f"request-log row {limited_id}")
    assert row["rate_limited"] is True
    assert row["upstream"] is None
    assert row["client_ip"] == own_ip


# Ways around the per-username limit that once got the right password to auth, and a token back,
# while the account's bucket was empty (issue 10, defect 2). tests/security/test_login_guard.py
# covers the class: every body encoding auth takes, every spelling of the name.


async def limited_account(client: httpx.AsyncClient) -> tuple[str, str]:
    """A fresh account whose login bucket this test has just emptied."""
    try:
        username, password, _ = await sign_up(client)
        for n in range(BURST):
            assert (await attempt(client, username, f"guess-{n}-{uuid.uuid4().hex}")).status_code == 400
        assert_limited(await attempt(client, username, password))
    except AssertionError as exc:
        pytest.fail(f"precondition failed: {exc}")
    return username, password


async def post_form(client: httpx.AsyncClient, fields: list[tuple[str, str]]) -> httpx.Response:
    return await client.post(
        "/auth/token", content=urlencode(fields), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )


async def test_a_compatibility_spelling_of_the_username_is_limited_too(own_ip_client: httpx.AsyncClient) -> None:
    username, password = await limited_account(own_ip_client)
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in username)
    if unicodedata.normalize("NFKC", full_width).casefold() != username:
        pytest.fail("test bug: the full-width spelling is not the same username")
    response = await attempt(own_ip_client, full_width, password)
    assert response.status_code == 429, response.text[:200]


async def test_a_second_username_field_does_not_dodge_the_limit(own_ip_client: httpx.AsyncClient) -> None:
    username, password = await limited_account(own_ip_client)
    response = await post_form(
        own_ip_client,
        [("grant_type", "password"), ("username", "decoy"), ("username", username), ("password", password)],
    )
    assert response.status_code in (400, 429), response.text[:200]


async def test_a_multipart_login_does_not_dodge_the_limit(own_ip_client: httpx.AsyncClient) -> None:
    username, password = await limited_account(own_ip_client)
    form = {"grant_type": (None, "password"), "username": (None, username), "password": (None, password)}
    response = await own_ip_client.post("/auth/token", files=form)
    assert response.status_code in (400, 415, 429), response.text[:200]


async def test_a_login_form_with_many_fields_is_a_client_error(own_ip_client: httpx.AsyncClient) -> None:
    username, password = await limited_account(own_ip_client)
    extra = [(f"extra{n}", "x") for n in range(60)]
    response = await post_form(
        own_ip_client, [*extra, ("grant_type", "password"), ("username", username), ("password", password)]
    )
    # Refused as malformed, or limited: neither a crash nor a way past the limit.
    assert response.status_code in (400, 413, 429), response.text[:200]
