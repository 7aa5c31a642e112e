"""Hostile input on every write endpoint: a 4xx naming the field, never a 500, nothing half-written,
and no error body, log line or login record that carries a password, a hash or an email."""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_service.cli import main
from auth_service.models import Login
from fastapi import FastAPI
from sqlalchemy import select

from .conftest import PASSWORD, bearer, login, sign_up, tokens_for

NEW_PASSWORD = "a brand new password"
# Characters Postgres cannot store, and control characters no one-line field takes.
UNSTORABLE = ["\x00", "\ud800"]
CONTROLS = ["\x07", "\n", "\x1b", "\x85", "\u202e"]


def raw_json(body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate as \ud800, as a hostile client would send it
    # (httpx's json= would refuse to encode it).
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json", **(headers or {})}}


def field_errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {str(e["loc"][-1]): e["msg"] for e in response.json()["detail"]}


async def user_count(client: httpx.AsyncClient, admin_token: str) -> int:
    return int((await client.get("/users", headers=bearer(admin_token))).json()["total"])


async def test_sign_up_refuses_unstorable_and_control_characters(client: httpx.AsyncClient, admin_token: str) -> None:
    base = {"username": "bob", "email": "bob@example.com", "password": PASSWORD}
    for bad in UNSTORABLE + CONTROLS:
        for field, value in (("full_name", f"Bo{bad}b"), ("username", f"bo{bad}b"), ("email", f"b{bad}ob@example.com")):
            response = await client.post("/users", **raw_json({**base, field: value}))
            assert field in field_errors(response), (field, bad)
    for bad in UNSTORABLE:
        response = await client.post("/users", **raw_json({**base, "password": PASSWORD + bad}))
        assert "NUL or unpaired surrogate" in field_errors(response)["password"]
    assert await user_count(client, admin_token) == 1  # only root: nothing half-written
    assert (await login(client, "bob")).status_code == 400


async def test_huge_strings_are_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    for size in (10_000, 100_000):
        for field in ("username", "full_name", "email", "password"):
            body = {"username": "bob", "email": "bob@example.com", "password": PASSWORD, field: "x" * size}
            response = await client.post("/users", json=body)
            assert field in field_errors(response)
            assert len(response.content) < 5_000  # the echo is bounded, not the 100 KB sent


async def test_patch_me_refuses_them_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    before = (await client.get("/users/me", headers=bearer(token))).json()
    for bad in UNSTORABLE + CONTROLS:
        for body, field in (
            ({"full_name": f"A{bad}"}, "full_name"),
            ({"email": f"a{bad}@example.com", "full_name": "Alice"}, "email"),
            ({"full_name": "Alice", "email": "new@example.com", "username": "x" * 10_000}, "username"),
        ):
            response = await client.patch("/users/me", **raw_json(body, bearer(token)))
            assert field in field_errors(response), (field, bad)
    for bad in UNSTORABLE:
        for body, field in (
            ({"password": NEW_PASSWORD + bad, "current_password": PASSWORD}, "password"),
            ({"password": NEW_PASSWORD, "current_password": PASSWORD + bad}, "current_password"),
        ):
            response = await client.patch("/users/me", **raw_json(body, bearer(token)))
            assert field in field_errors(response), (field, bad)
    assert (await client.get("/users/me", headers=bearer(token))).json() == before
    assert (await login(client)).status_code == 200  # the password did not change


async def test_admin_patch_bounds_the_scope_list(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    for scopes in (["predict\x00"], ["x" * 100_000], ["predict"] * 10_000):
        response = await client.patch(f"/users/{user['id']}", headers=bearer(admin_token), json={"scopes": scopes})
        assert response.status_code == 422, response.text
        assert "scopes" in response.json()["detail"][0]["loc"]
        assert len(response.content) < 5_000
    unchanged = await client.get(f"/users/{user['id']}", headers=bearer(admin_token))
    assert unchanged.json()["scopes"] == ["predict", "models:read"]


async def test_every_paging_parameter_is_bounded(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    for path, auth in (
        ("/users/me/logins", token),
        ("/users", admin_token),
        (f"/users/{user['id']}/logins", admin_token),
    ):
        for name in ("offset", "limit"):
            for value in (str(2**63), str(10**400), "9" * 5000, "-1", "1e3", "0x10", "1\x00"):
                response = await client.get(path, headers=bearer(auth), params={name: value})
                assert response.status_code == 422, (path, name, response.text)
                assert response.json()["detail"][0]["loc"] == ["query", name]
    # The largest offset a bigint holds is a valid (empty) page.
    last = await client.get("/users/me/logins", headers=bearer(token), params={"offset": 2**63 - 1})
    assert last.status_code == 200 and last.json()["items"] == []


async def test_client_authentication_answers_invalid_client_for_hostile_credentials(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    def basic(raw: bytes) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    attempts: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"client_id": "mgc_\x00x", "client_secret": "s"}, {}),
        ({"client_id": "mgc_x", "client_secret": "s\x00"}, {}),
        ({"client_id": "m" * 100_000, "client_secret": "s" * 100_000}, {}),
        ({}, basic(b"mgc_\x00x:secret")),
        ({}, basic(b"mgc_x:%00%ff")),
        ({}, basic(b"mgc_%ED%A0%80:x")),  # an encoded surrogate: not UTF-8
        ({}, basic("mgc_\u00e9:\u00e9".encode())),
        ({}, {"Authorization": "Basic " + "A" * 10_000}),
    ]
    for form, headers in attempts:
        response = await client.post("/token", data={"grant_type": "client_credentials", **form}, headers=headers)
        assert response.status_code == 401, (form, headers, response.text)
        assert response.json()["error"] == "invalid_client"
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login).order_by(Login.id)))
    assert [(r.success, r.client_id) for r in rows] == [(False, None)] * len(attempts)


async def test_token_endpoint_answers_rfc6749_errors_for_hostile_forms(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    forms = [
        {"grant_type": "password", "username": "ali\x00ce", "password": PASSWORD},
        {"grant_type": "pass\x00word", "username": "alice", "password": PASSWORD},
        {"grant_type": "password", "username": "alice", "password": PASSWORD + "\x00"},
        {"grant_type": "refresh_token", "refresh_token": "r\x00" * 50_000},
        {"grant_type": "password", "username": "a" * 100_000, "password": "p" * 100_000},
    ]
    for form in forms:
        response = await client.post("/token", data=form, headers={"User-Agent": "evil\x00agent"})
        assert response.status_code == 400, response.text
        assert response.json()["error"] in {"invalid_grant", "unsupported_grant_type"}
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login).order_by(Login.id)))
    assert [r.success for r in rows] == [False] * len(forms)
    assert {r.user_agent for r in rows} == {"evil\ufffdagent"}
    assert rows[1].grant_type == "pass\ufffdword"


async def test_revoke_takes_hostile_tokens(client: httpx.AsyncClient) -> None:
    for token in ("a\x00b", "x" * 100_000, "a.b\x00"):
        assert (await client.post("/revoke", data={"token": token})).status_code == 200


async def test_malformed_bodies_are_4xx(client: httpx.AsyncClient) -> None:
    as_json = {"content-type": "application/json"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/users", {"content": b"[" * 10_000 + b"]" * 10_000, "headers": as_json}),
        ("/users", {"content": b"[" * 900 + b"]" * 900, "headers": as_json}),
        ("/users", {"content": b'{"a":' * 900 + b"1" + b"}" * 900, "headers": as_json}),
        ("/users", {"content": b'{"username": ' + b"1" * 5000 + b"}", "headers": as_json}),
        ("/users", {"content": b'{"username": 1e400}', "headers": as_json}),
        ("/users", {"content": b"username=bob", "headers": {"content-type": "text/plain"}}),
        ("/users", {"content": b"\xff\xfe{}", "headers": as_json}),
        ("/token", {"json": {"grant_type": "password", "username": "alice", "password": PASSWORD}}),
        ("/token", {"content": b"\xff" * 100, "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    ]
    for path, kwargs in cases:
        response = await client.post(path, **kwargs)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert response.json()
        assert len(response.content) < 5_000


# 422 bodies never echo a secret field.


async def test_sign_up_422_never_echoes_the_password(client: httpx.AsyncClient) -> None:
    for kwargs in (
        {"json": {"username": "bob", "email": "bob@example.com", "password": "secret-pw"}},  # too short
        {"json": {"username": "b", "email": "bob@example.com", "password": "secret-pw-long-enough"}},
        {"json": {"email": "bob@example.com", "password": "secret-pw-long-enough"}},  # whole body echoed
        {"data": {"username": "bob", "password": "secret-pw-long-enough"}},  # a form where JSON is expected
    ):
        response = await client.post("/users", **kwargs)
        assert response.status_code == 422
        assert "secret-pw" not in response.text


async def test_patch_me_422_never_echoes_either_password(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    for body in (
        {"password": "secret-pw", "current_password": PASSWORD},
        {"password": NEW_PASSWORD, "current_password": "secret-pw" * 200},
        {"password": NEW_PASSWORD, "current_password": PASSWORD, "new_password": "secret-pw"},  # extra field
    ):
        response = await client.patch("/users/me", headers=bearer(token), json=body)
        assert response.status_code == 422, response.text
        assert "secret-pw" not in response.text
        assert PASSWORD not in response.text


# Logs: no traceback or log line carries request data.


async def test_a_database_error_is_a_json_500_whose_log_holds_no_hash_email_or_password(
    client: httpx.AsyncClient, app: FastAPI, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hash Postgres refuses to store: the INSERT fails with the row's values bound to it.
    hasher = app.state.auth.hasher
    secret_hash = "$bcrypt-sha256$v=2,t=2b,r=04$SECRETSALT$SECRETHASH\x00"

    async def poisoned_hash(password: str) -> str:
        return secret_hash

    hasher.hash = poisoned_hash
    caplog.set_level(logging.DEBUG)
    body = {"username": "bob", "email": "bob.private@example.com", "password": PASSWORD}
    response = await client.post("/users", json=body, headers={"X-Request-ID": "req-db-error"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal error", "request_id": "req-db-error"}
    logged = caplog.text + "".join(capsys.readouterr())
    for secret in ("SECRETSALT", "SECRETHASH", "bob.private", PASSWORD):
        assert secret not in logged, secret
        assert secret not in response.text
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "POST /users" in errors[0] and "req-db-error" in errors[0]
    assert "DBAPIError" in errors[0] and "create_user" in errors[0]


# Defect 11: what the username field held is recorded only when it names an account.


async def test_a_password_typed_into_the_username_field_is_never_stored(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client)
    await login(client, PASSWORD, "whatever")  # the password typed where the name goes
    await login(client, "ALICE", "wrong password!!")  # an existing account, typed differently
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login).order_by(Login.id)))
    assert [(r.username, r.reason) for r in rows] == [(None, "unknown_user"), ("alice", "wrong_password")]
    assert str(rows[1].user_id) == user["id"]
    assert all(str(r.client_ip) == "127.0.0.1" for r in rows)  # still countable per client IP
    token = (await tokens_for(client))["access_token"]
    history = (await client.get("/users/me/logins", headers=bearer(token))).json()
    assert [(i["username"], i["reason"]) for i in history["items"]] == [("alice", "ok"), ("alice", "wrong_password")]


async def test_failed_refreshes_name_the_account_they_concern(client: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(client)
    issued = await tokens_for(client)
    await client.post("/revoke", data={"token": issued["refresh_token"]})
    await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "made-up"})
    async with app.state.auth.sessions() as session:
        rows = list(await session.scalars(select(Login).where(Login.grant_type == "refresh_token").order_by(Login.id)))
    assert [(r.username, r.reason) for r in rows] == [
        ("alice", "refresh_token_revoked"),
        (None, "refresh_token_unknown"),
    ]


def test_cli_create_user_refuses_a_full_name_postgres_cannot_store(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    monkeypatch.setenv("MODELGATE_AUTH_BCRYPT_ROUNDS", "4")
    assert main(["migrate"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    args = ["create-user", "bob", "--email", "bob@example.com", "--full-name", "B\x00b", "--password-stdin"]
    assert main(args) == 1
    assert "--full-name" in capsys.readouterr().err
