"""Hostile input through the whole stack (issue 10, defects 5, 6, 8 and 11).

Every write endpoint of auth (sign-up, ``PATCH /users/me``, the password change, the admin's
user patch, ``/token``, ``/revoke``), inference (V1 JSON, the CSV upload, V2 infer) and the
gateway's admin filters gets NUL and control characters, lone surrogates, 10 KB and 100 KB
strings, huge integers (2**63, 10**400), 10,000 levels of JSON nesting and wrong content
types. Expected: a 4xx with a message, never a 5xx; nothing half-written (checked through the
API); no 422 body echoing a password; no log line carrying what was sent; and a password typed
into the username field is stored nowhere.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import Stack

from ..conftest import bearer, password_login, sign_up

HUGE_INTS = [2**63, 10**400]
BAD_TEXT = ["nul\x00here", "bell\x07", "esc\x1b[31m", "line\nbreak", "c1\x85", "rtl\u202eoverride", "lone\ud800"]
LONG_TEXT = ["x" * 10_000, "x" * 100_000]
DEEP = b"[" * 10_000 + b"]" * 10_000
PIMA = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}


def as_json(body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    # json.dumps writes a lone surrogate as the escape \ud800 (httpx's json= cannot encode it)
    # and a 400-digit integer as its digits: what a hostile client sends.
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json", **(headers or {})}}


def hostile_values(field: str = "") -> list[Any]:
    # A password may hold any character that can be hashed (a newline, an RTL mark): only NUL
    # and lone surrogates are refused there, with the length limits.
    text = [v for v in BAD_TEXT if "\x00" in v or "\ud800" in v] if "password" in field else BAD_TEXT
    return [*text, *LONG_TEXT, *HUGE_INTS, -(2**63) - 1, 1e308, [1] * 1000, {"$ne": ""}]


def assert_refused(response: httpx.Response, what: object) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:300])
    body = response.json()
    message = body.get("detail") or body.get("error") or body.get("error_description")
    assert message, (what, body)
    assert len(response.content) < 10_000, (what, len(response.content))


def assert_nothing_in_log(stack: Stack, *values: str) -> None:
    for name in ("auth", "inference", "gateway"):
        path = stack.services[name].log_path
        assert path is not None
        text = path.read_text(errors="replace")
        for value in values:
            assert value not in text, f"{name}.log holds a submitted value"


@pytest.fixture
async def user(own_ip_client: httpx.AsyncClient) -> dict[str, str]:
    username, password, sub = await sign_up(own_ip_client)
    tokens = await password_login(own_ip_client, username, password)
    return {"username": username, "password": password, "id": sub, "token": tokens["access_token"]}


async def test_sign_up_refuses_hostile_fields_and_creates_no_one(
    own_ip_client: httpx.AsyncClient, admin_token: str, stack: Stack
) -> None:
    before = (await own_ip_client.get("/auth/users", headers=bearer(admin_token))).json()["total"]
    marker = f"hostile-{uuid.uuid4().hex[:8]}"
    base = {"username": marker, "password": f"pw-{uuid.uuid4().hex}", "email": f"{marker}@example.com"}
    for field in ("username", "email", "password", "full_name"):
        for value in hostile_values(field):
            assert_refused(await own_ip_client.post("/auth/users", **as_json({**base, field: value})), (field, value))
    for body in (DEEP, b"[" * 900 + b"]" * 900, b'{"username": ' + b"9" * 5000 + b"}", b"\xff\xfe"):
        response = await own_ip_client.post("/auth/users", content=body, headers={"content-type": "application/json"})
        assert_refused(response, body[:20])
    for content_type, body in (("text/plain", b"username=x"), ("application/x-www-form-urlencoded", b"username=x")):
        response = await own_ip_client.post("/auth/users", content=body, headers={"content-type": content_type})
        assert_refused(response, content_type)
    after = (await own_ip_client.get("/auth/users", headers=bearer(admin_token))).json()["total"]
    assert after == before
    # The NUL full name of issue 10: refused, and the row's values never reached a log.
    nul = await own_ip_client.post("/auth/users", **as_json({**base, "full_name": "nul\x00name"}))
    assert nul.status_code == 422 and nul.json()["detail"][0]["loc"] == ["body", "full_name"]
    assert_nothing_in_log(stack, base["email"], base["password"])


async def test_account_changes_refuse_hostile_fields_and_change_nothing(
    own_ip_client: httpx.AsyncClient, user: dict[str, str], admin_token: str
) -> None:
    me = bearer(user["token"])
    before = (await own_ip_client.get("/auth/users/me", headers=me)).json()
    new_password = f"new-{uuid.uuid4().hex}"
    for value in hostile_values():
        for body in ({"full_name": value}, {"email": value}):
            response = await own_ip_client.patch("/auth/users/me", **as_json(body, me))
            assert_refused(response, (list(body), value))
        for body in ({"scopes": [value]}, {"scopes": value}, {"disabled": value}):
            response = await own_ip_client.patch(f"/auth/users/{user['id']}", **as_json(body, bearer(admin_token)))
            assert_refused(response, (list(body), value))
    for value in hostile_values("password"):
        for body in (
            {"password": value, "current_password": user["password"]},
            {"password": new_password, "current_password": value},
        ):
            response = await own_ip_client.patch("/auth/users/me", **as_json(body, me))
            assert_refused(response, (list(body), value))
    for body in (DEEP, b"\x00", b"full_name=x"):
        response = await own_ip_client.patch("/auth/users/me", headers=me, content=body)
        assert_refused(response, body[:20])
    assert (await own_ip_client.get("/auth/users/me", headers=me)).json() == before
    admin_view = await own_ip_client.get(f"/auth/users/{user['id']}", headers=bearer(admin_token))
    assert (admin_view.json()["scopes"], admin_view.json()["disabled"]) == (before["scopes"], False)
    # The password did not change: the old one still logs in.
    await password_login(own_ip_client, user["username"], user["password"])


async def test_token_and_revoke_answer_hostile_forms_with_rfc6749_errors(
    own_ip_client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    for value in ["nul\x00here", "esc\x1b", *LONG_TEXT, str(2**63)]:
        for form in (
            {"grant_type": "password", "username": value, "password": user["password"]},
            {"grant_type": "password", "username": user["username"], "password": value},
            {"grant_type": value, "username": user["username"], "password": user["password"]},
            {"grant_type": "refresh_token", "refresh_token": value},
        ):
            assert_refused(await own_ip_client.post("/auth/token", data=form), (list(form), value[:20]))
        assert (await own_ip_client.post("/auth/revoke", data={"token": value})).status_code == 200
    for content_type, body in (("application/json", b'{"grant_type": "password"}'), ("text/plain", b"\x00")):
        response = await own_ip_client.post("/auth/token", content=body, headers={"content-type": content_type})
        assert_refused(response, content_type)


async def test_paging_parameters_are_bounded(own_ip_client: httpx.AsyncClient, user: dict[str, str]) -> None:
    # Issue 10 defect 5: any signed-in user could make auth answer 500 through their own logins.
    for name in ("offset", "limit"):
        for value in (str(2**63), str(10**400), "9" * 5000, "-1", "nul\x00"):
            response = await own_ip_client.get(
                "/auth/users/me/logins", params={name: value}, headers=bearer(user["token"])
            )
            assert response.status_code == 422, (name, value[:20], response.text[:200])
            assert response.json()["detail"][0]["loc"] == ["query", name]


async def test_no_error_body_echoes_a_password(own_ip_client: httpx.AsyncClient, user: dict[str, str]) -> None:
    short = f"s{uuid.uuid4().hex[:7]}"  # below the 10-character minimum
    marker = f"u{uuid.uuid4().hex[:8]}"
    signups = [
        as_json({"username": marker, "email": f"{marker}@example.com", "password": short}),
        as_json({"email": f"{marker}@example.com", "password": user["password"]}),  # the whole body echoed
        {"data": {"username": marker, "password": user["password"]}},  # a form where JSON is expected
    ]
    for kwargs in signups:
        response = await own_ip_client.post("/auth/users", **kwargs)
        assert response.status_code == 422
        assert short not in response.text and user["password"] not in response.text
    change = {"password": short, "current_password": user["password"]}
    response = await own_ip_client.patch("/auth/users/me", **as_json(change, bearer(user["token"])))
    assert response.status_code == 422
    assert short not in response.text and user["password"] not in response.text


async def test_a_password_typed_as_the_username_is_stored_nowhere(
    own_ip_client: httpx.AsyncClient, user: dict[str, str], admin_token: str, stack: Stack
) -> None:
    # Issue 10 defect 11: the login history used to keep the username as typed.
    typo = {"grant_type": "password", "username": user["password"], "password": f"pw-{uuid.uuid4().hex}"}
    response = await own_ip_client.post("/auth/token", data=typo)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    wrong = {"grant_type": "password", "username": user["username"].upper(), "password": "not the password"}
    assert (await own_ip_client.post("/auth/token", data=wrong)).status_code == 400
    assert stack.postgres is not None
    conn = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    try:
        stored = await conn.fetchval("SELECT count(*) FROM logins WHERE strpos(username, $1) > 0", user["password"])
    finally:
        await conn.close()
    assert stored == 0
    history = await own_ip_client.get(f"/auth/users/{user['id']}/logins", headers=bearer(admin_token))
    rows = [(r["username"], r["reason"]) for r in history.json()["items"]]
    # The account's own attempts are there, under its stored name; the typo is not anyone's.
    assert rows == [(user["username"], "wrong_password"), (user["username"], "ok")]
    assert_nothing_in_log(stack, user["password"])


async def test_inference_refuses_hostile_input(own_ip_client: httpx.AsyncClient, user: dict[str, str]) -> None:
    token = bearer(user["token"])
    # 2**63 is a fine feature value (a float64 holds it); 10**400 is not a float64.
    for value in [v for v in hostile_values() if not isinstance(v, int | float) or abs(v) > 1e308]:
        row = {**PIMA, "plas": value}
        response = await own_ip_client.post("/v1/models/diabetes/predict", **as_json({"instances": [row]}, token))
        assert_refused(response, ("v1", value))
        v2 = {
            "inputs": [
                {"name": "input", "shape": [1, 8], "datatype": "FP64", "data": [value, *list(PIMA.values())[1:]]}
            ]
        }
        assert_refused(await own_ip_client.post("/v2/models/diabetes/infer", **as_json(v2, token)), ("v2", value))
    for value in hostile_values():
        shape = {"inputs": [{"name": "input", "shape": [value, 8], "datatype": "FP64", "data": [1]}]}
        assert_refused(await own_ip_client.post("/v2/models/diabetes/infer", **as_json(shape, token)), ("shape", value))
    huge_count = {"inputs": [{"name": "input", "shape": [10**400] * 11, "datatype": "FP64", "data": [1]}]}
    for path, kwargs in (
        ("/v1/models/diabetes/predict", {"content": DEEP, "headers": {"content-type": "application/json"}}),
        ("/v1/models/diabetes/predict", {"content": b'{"instances": [[' + b"9" * 5000 + b"]]}"}),
        ("/v1/models/diabetes/predict", {"data": {"instances": "x"}}),
        ("/v2/models/diabetes/infer", {"content": DEEP}),
        ("/v2/models/diabetes/infer", as_json(huge_count)),
        ("/v2/models/diabetes/infer", {"content": b"{}", "headers": {"inference-header-content-length": "9" * 5000}}),
        ("/v1/models/diabetes/predict-csv", {"files": {"file": ("a.csv", b"preg,plas\n1,\x00\n")}}),
        ("/v1/models/diabetes/predict-csv", {"files": {"file": ("a.csv", ",".join(map(str, range(20_000))).encode())}}),
        ("/v1/models/diabetes/predict-csv", {"files": {"file": ("a.csv", b"\xff\xfe\x00\x01")}}),
        (
            "/v1/models/diabetes/predict-csv",
            {"content": b'{"file": 1}', "headers": {"content-type": "application/json"}},
        ),
    ):
        headers = {**kwargs.pop("headers", {}), **token}
        assert_refused(await own_ip_client.post(path, headers=headers, **kwargs), path)


async def test_gateway_admin_filters_are_bounded(gateway: httpx.AsyncClient, admin_token: str) -> None:
    cases = {
        "before_id": [str(2**63), str(10**400)],
        "status": [str(2**63), str(10**400)],
        "limit": [str(10**400)],
        "user": ["nul\x00here", "esc\x1b", "x" * 10_000],
        "path": ["/v1/\x00", "/v1/\x1b", "/" * 10_000],
        "since": ["9999-12-31T23:00:00-05:00"],
        "until": ["0001-01-01T00:00:00+05:00"],
    }
    for name, values in cases.items():
        for value in values:
            response = await gateway.get("/admin/request-log", params={name: value}, headers=bearer(admin_token))
            assert response.status_code == 422, (name, value[:20], response.text[:200])
    usage = await gateway.get("/admin/usage", params={"window_seconds": str(2**63)}, headers=bearer(admin_token))
    assert usage.status_code == 422
    # The filters still work: the log answers, and the paths with NUL sent above did not break it.
    assert (
        await gateway.get("/admin/request-log", params={"limit": 1}, headers=bearer(admin_token))
    ).status_code == 200
