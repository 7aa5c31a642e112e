"""How ``/token`` and ``/revoke`` read their form (issue 10, defect 2, defence in depth behind the
gateway): no parameter twice (RFC 6749 3.2), and every encoding and spelling of a username is
the one account."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from auth_service.models import Login
from fastapi import FastAPI
from sqlalchemy import select

from .conftest import PASSWORD, sign_up

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def post_fields(client: httpx.AsyncClient, path: str, fields: list[tuple[str, str]]) -> httpx.Response:
    return await client.post(path, content=urlencode(fields), headers=FORM)


@pytest.mark.parametrize(
    "fields",
    [
        [("grant_type", "password"), ("username", "decoy"), ("username", "alice"), ("password", PASSWORD)],
        [("grant_type", "password"), ("username", "alice"), ("password", "wrong"), ("password", PASSWORD)],
        [("grant_type", "refresh_token"), ("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)],
        [("grant_type", "password"), ("username", "alice"), ("password", PASSWORD), ("scope", "a"), ("scope", "b")],
    ],
)
async def test_a_repeated_parameter_is_an_invalid_request(
    client: httpx.AsyncClient, app: FastAPI, fields: list[tuple[str, str]]
) -> None:
    await sign_up(client)
    response = await post_fields(client, "/token", fields)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert "is repeated" in body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    # The attempt is recorded like any other refused one.
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login)))
    assert [(r.success, r.reason) for r in rows] == [(False, "invalid_request")]


async def test_a_repeated_multipart_username_is_an_invalid_request(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    boundary = "XyZ"
    parts = [("grant_type", "password"), ("username", "decoy"), ("username", "alice"), ("password", PASSWORD)]
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in parts
    )
    response = await client.post(
        "/token",
        content=f"{body}--{boundary}--\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


async def test_revoke_refuses_a_repeated_token(client: httpx.AsyncClient) -> None:
    response = await post_fields(client, "/revoke", [("token", "a"), ("token", "b")])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "spelling", ["ALICE", full_width("alice"), full_width("Alice"), " alice\t", "\U0001d41alice", "\u24d0lice"]
)
async def test_every_spelling_of_the_name_is_the_account(client: httpx.AsyncClient, spelling: str) -> None:
    await sign_up(client)
    urlencoded = await client.post(
        "/token", data={"grant_type": "password", "username": spelling, "password": PASSWORD}
    )
    assert urlencoded.status_code == 200, urlencoded.text
    multipart = await client.post(
        "/token",
        files={"grant_type": (None, "password"), "username": (None, spelling), "password": (None, PASSWORD)},
    )
    assert multipart.status_code == 200, multipart.text
