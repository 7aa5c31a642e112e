"""Issue 10, defect 2, through the whole stack: the per-username login guard.

The gateway's bucket must be the account auth authenticates, whatever the body encoding (every
one auth takes) and whatever the spelling of the name (auth finds accounts by NFKC + case-fold);
a body the two could read differently is refused at the gateway, before auth.

Default policy ``10/minute:5``: five attempts back to back, then the bucket is empty. Each test
uses ``own_ip_client``: a per-IP login bucket of its own, so only the username's can run out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from ..conftest import bearer, eventually, sign_up

BURST = 5
USERNAME_POLICY = "10;w=60;burst=5"
Fields = list[tuple[str, str]]


# -- every body encoding auth's /token takes (FastAPI Form(): Starlette's two form parsers) ---------


def urlencoded(fields: Fields) -> tuple[str, bytes]:
    return "application/x-www-form-urlencoded", urlencode(fields).encode()


def urlencoded_escaped_names(fields: Fields) -> tuple[str, bytes]:
    """Every byte of every name and value percent-encoded (``user%6Eame``): the same form."""
    escaped = "&".join(
        "".join(f"%{b:02X}" for b in name.encode()) + "=" + quote(value, safe="") for name, value in fields
    )
    return "application/x-www-form-urlencoded; charset=UTF-8", escaped.encode()


def multipart(fields: Fields, charset: str = "utf-8") -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="'
        + name.encode(charset)
        + b'"\r\n\r\n'
        + value.encode(charset)
        + b"\r\n"
        for name, value in fields
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    if charset != "utf-8":
        content_type += f"; charset={charset}"  # Starlette decodes names and values with it
    return content_type, body + f"--{boundary}--\r\n".encode()


def multipart_utf16(fields: Fields) -> tuple[str, bytes]:
    return multipart(fields, "utf-16-le")


ENCODINGS: dict[str, Callable[[Fields], tuple[str, bytes]]] = {
    "urlencoded": urlencoded,
    "urlencoded-escaped": urlencoded_escaped_names,
    "multipart": multipart,
    "multipart-utf16": multipart_utf16,
}


# -- spellings auth takes for the same account -----------------------------------------------------


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


SPELLINGS: dict[str, Callable[[str], str]] = {
    "as-signed-up": lambda name: name,
    "upper-case": str.upper,
    "full-width": full_width,
    # NFKC-equivalent: MATHEMATICAL BOLD SMALL U for "u", CIRCLED LATIN SMALL LETTER E for "e",
    # with ideographic spaces around (NFKC makes them spaces, which auth trims).
    "compatibility": lambda name: "\u3000" + name.replace("u", "\U0001d42e", 1).replace("e", "\u24d4", 1) + "\u3000",
    "full-width-upper": lambda name: full_width(name.upper()),
}


async def login(
    client: httpx.AsyncClient, encoding: str, username: str, password: str, request_id: str | None = None
) -> httpx.Response:
    content_type, body = ENCODINGS[encoding](
        [("grant_type", "password"), ("username", username), ("password", password)]
    )
    headers = {"Content-Type": content_type}
    if request_id:
        headers["X-Request-ID"] = request_id
    return await client.post("/auth/token", content=body, headers=headers)


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text[:300]
    assert response.json()["error"] == "rate_limited"
    # The username's policy ran out, not the address's (60;w=60;burst=30).
    assert response.headers["ratelimit-policy"] == USERNAME_POLICY


def assert_refused_at_gateway(response: httpx.Response, why: str) -> None:
    """RFC 6749 5.2, as auth itself answers."""
    assert response.status_code == 400, response.text[:300]
    assert set(response.json()) == {"error", "error_description"}, response.text[:300]
    assert response.json()["error"] == "invalid_request"
    assert why in response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"


async def login_history(gateway: httpx.AsyncClient, admin_token: str, user_id: str) -> list[dict[str, Any]]:
    response = await gateway.get(f"/auth/users/{user_id}/logins", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def request_log_row(gateway: httpx.AsyncClient, admin_token: str, request_id: str) -> dict[str, Any]:
    async def row() -> dict[str, Any] | None:
        response = await gateway.get(
            "/admin/request-log", params={"path": "/auth/token", "status": 400}, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        return next((r for r in response.json()["items"] if r["request_id"] == request_id), None)

    return await eventually(row, f"request-log row {request_id}")


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_guesses_in_any_encoding_and_spelling_fill_the_accounts_bucket(
    own_ip_client: httpx.AsyncClient, gateway: httpx.AsyncClient, admin_token: str, encoding: str, spelling: str
) -> None:
    client = own_ip_client
    username, password, user_id = await sign_up(client)
    name = SPELLINGS[spelling](username)
    for n in range(BURST):
        response = await login(client, encoding, name, f"guess-{n}-{uuid.uuid4().hex}")
        assert response.status_code == 400, response.text[:300]
        assert response.json()["error"] == "invalid_grant"
    # The account's bucket is empty: the right password waits, in this form and in the plain one.
    assert_limited(await login(client, encoding, name, password))
    assert_limited(await login(client, "urlencoded", username, password))
    # Auth took every guess for this account (the spelling and encoding are really the account's),
    # and saw nothing after the limit.
    history = await login_history(gateway, admin_token, user_id)
    assert [row["reason"] for row in history] == ["wrong_password"] * BURST


async def test_once_limited_no_encoding_or_spelling_gets_the_right_password_through(
    own_ip_client: httpx.AsyncClient, gateway: httpx.AsyncClient, admin_token: str
) -> None:
    client = own_ip_client
    username, password, user_id = await sign_up(client)
    for n in range(BURST):
        assert (await login(client, "urlencoded", username, f"guess-{n}")).status_code == 400
    for encoding in ENCODINGS:
        for spelling, spell in SPELLINGS.items():
            response = await login(client, encoding, spell(username), password)
            assert response.status_code == 429, f"{encoding}, {spelling}: {response.text[:200]}"
            assert_limited(response)
    history = await login_history(gateway, admin_token, user_id)
    assert len(history) == BURST and not any(row["success"] for row in history)


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_a_repeated_username_is_refused_at_the_gateway(
    own_ip_client: httpx.AsyncClient, gateway: httpx.AsyncClient, admin_token: str, encoding: str
) -> None:
    username, password, user_id = await sign_up(own_ip_client)
    request_id = f"sec-repeated-{uuid.uuid4().hex[:12]}"
    content_type, body = ENCODINGS[encoding](
        [("grant_type", "password"), ("username", "decoy"), ("username", username), ("password", password)]
    )
    response = await own_ip_client.post(
        "/auth/token", content=body, headers={"Content-Type": content_type, "X-Request-ID": request_id}
    )
    assert_refused_at_gateway(response, "'username' is repeated")
    row = await request_log_row(gateway, admin_token, request_id)
    assert row["status"] == 400 and row["upstream"] is None
    assert await login_history(gateway, admin_token, user_id) == []


@pytest.mark.parametrize(
    ("content_type", "form"),
    [
        ("application/json", '{{"grant_type": "password", "username": "{u}", "password": "{p}"}}'),
        ("text/plain", "grant_type=password&username={u}&password={p}"),
        ("application/xml", "<login><username>{u}</username><password>{p}</password></login>"),
        ("application/x-www-form-urlencoded-typo", "grant_type=password&username={u}&password={p}"),
        (None, "grant_type=password&username={u}&password={p}"),
    ],
)
async def test_a_body_encoding_auth_does_not_take_is_refused_before_auth(
    own_ip_client: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    admin_token: str,
    content_type: str | None,
    form: str,
) -> None:
    username, password, user_id = await sign_up(own_ip_client)
    request_id = f"sec-encoding-{uuid.uuid4().hex[:12]}"
    headers = {"X-Request-ID": request_id}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await own_ip_client.post(
        "/auth/token", content=form.format(u=username, p=password).encode(), headers=headers
    )
    assert_refused_at_gateway(response, "application/x-www-form-urlencoded or multipart/form-data")
    row = await request_log_row(gateway, admin_token, request_id)
    assert row["status"] == 400 and row["upstream"] is None
    assert await login_history(gateway, admin_token, user_id) == []


@pytest.mark.parametrize(
    ("content_type", "body", "why"),
    [
        ("multipart/form-data", b"--b\r\nno boundary declared\r\n--b--\r\n", "boundary"),
        ("multipart/form-data; boundary=b", b"preamble\r\n--b\r\n", "malformed"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="username"; filename="u"\r\n\r\nx\r\n--b--\r\n',
            "malformed",
        ),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=x" % n for n in range(200)), "Too many fields"),
    ],
)
async def test_a_login_body_that_does_not_parse_is_a_clean_400(
    own_ip_client: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    admin_token: str,
    content_type: str,
    body: bytes,
    why: str,
) -> None:
    request_id = f"sec-malformed-{uuid.uuid4().hex[:12]}"
    response = await own_ip_client.post(
        "/auth/token", content=body, headers={"Content-Type": content_type, "X-Request-ID": request_id}
    )
    assert_refused_at_gateway(response, why)
    row = await request_log_row(gateway, admin_token, request_id)
    assert row["status"] == 400 and row["upstream"] is None
