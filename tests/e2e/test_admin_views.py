"""The gateway's admin views (``admin`` scope): the request log and per-user usage.

One user makes a known set of requests, each with its own X-Request-ID; the tests then read
them back. The log is written off the request path, in batches, so reading waits for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from ..conftest import bearer, eventually, password_login, sign_up

PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}


@dataclass(frozen=True)
class Sent:
    request_id: str
    method: str
    path: str
    status: int
    route: str
    request_bytes: int
    response_bytes: int


@dataclass(frozen=True)
class Traffic:
    sub: str
    token: str
    sent: list[Sent]


@pytest.fixture(scope="module")
async def traffic(gateway: httpx.AsyncClient, admin_token: str) -> Traffic:
    username, password, sub = await sign_up(gateway)
    token = (await password_login(gateway, username, password))["access_token"]
    prefix = f"e2e-admin-{uuid.uuid4().hex[:8]}"
    bad_row = {k: v for k, v in PIMA_ROW.items() if k != "plas"}
    requests = [
        ("GET", "/auth/users/me", None, 200, "auth"),
        ("POST", "/v1/models/diabetes/predict", {"instances": [PIMA_ROW]}, 200, "inference"),
        ("POST", "/v1/models/diabetes/predict", {"instances": [PIMA_ROW, PIMA_ROW]}, 200, "inference"),
        ("POST", "/v1/models/diabetes/predict", {"instances": [bad_row]}, 422, "inference"),
        ("GET", "/v1/models/no-such-model", None, 404, "inference"),
        ("GET", "/v2/models/diabetes", None, 200, "inference"),
    ]
    sent = []
    for n, (method, path, body, status, route) in enumerate(requests):
        request_id = f"{prefix}-{n}"
        response = await gateway.request(method, path, json=body, headers={**bearer(token), "X-Request-ID": request_id})
        assert response.status_code == status, response.text
        assert response.headers["x-request-id"] == request_id
        sent.append(Sent(request_id, method, path, status, route, len(response.request.content), len(response.content)))

    async def all_written() -> list[dict] | None:
        response = await gateway.get("/admin/request-log", params={"user": sub}, headers=bearer(admin_token))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        return items if len(items) >= len(sent) else None

    await eventually(all_written, f"request-log rows of {sub}")
    return Traffic(sub, token, sent)


async def read_log(gateway: httpx.AsyncClient, admin_token: str, **params: object) -> dict:
    response = await gateway.get("/admin/request-log", params=params, headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_request_log_has_a_row_per_request(
    gateway: httpx.AsyncClient, admin_token: str, traffic: Traffic
) -> None:
    page = await read_log(gateway, admin_token, user=traffic.sub)
    rows = {row["request_id"]: row for row in page["items"]}
    # Exactly the requests made with the token: signing up and logging in had none.
    assert sorted(rows) == sorted(s.request_id for s in traffic.sent)
    for sent in traffic.sent:
        row = rows[sent.request_id]
        assert (row["method"], row["path"], row["status"], row["route"]) == (
            sent.method,
            sent.path,
            sent.status,
            sent.route,
        )
        assert row["user_sub"] == traffic.sub
        assert row["client_ip"] == "127.0.0.1"
        assert row["rate_limited"] is False
        assert row["upstream"]
        assert (row["request_bytes"], row["response_bytes"]) == (sent.request_bytes, sent.response_bytes)
    # Newest first.
    ids = [row["id"] for row in page["items"]]
    assert ids == sorted(ids, reverse=True)
    assert [row["request_id"] for row in page["items"]] == [s.request_id for s in reversed(traffic.sent)]


async def test_request_log_filters_and_pages(gateway: httpx.AsyncClient, admin_token: str, traffic: Traffic) -> None:
    unprocessable = await read_log(gateway, admin_token, user=traffic.sub, status=422)
    assert [r["request_id"] for r in unprocessable["items"]] == [s.request_id for s in traffic.sent if s.status == 422]
    v2 = await read_log(gateway, admin_token, user=traffic.sub, path="/v2/")
    assert [r["request_id"] for r in v2["items"]] == [s.request_id for s in traffic.sent if s.path.startswith("/v2/")]

    seen: list[str] = []
    before_id = None
    for _ in range(len(traffic.sent)):
        params: dict[str, object] = {"user": traffic.sub, "limit": 2}
        if before_id is not None:
            params["before_id"] = before_id
        page = await read_log(gateway, admin_token, **params)
        assert len(page["items"]) <= 2
        seen += [r["request_id"] for r in page["items"]]
        before_id = page["next_before_id"]
        if before_id is None:
            break
    assert before_id is None
    assert seen == [s.request_id for s in reversed(traffic.sent)]


async def test_usage_counts_a_users_requests(gateway: httpx.AsyncClient, admin_token: str, traffic: Traffic) -> None:
    response = await gateway.get("/admin/usage", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    (usage,) = [u for u in response.json()["users"] if u["user_sub"] == traffic.sub]
    assert usage["requests"] == len(traffic.sent)
    assert usage["client_errors"] == sum(1 for s in traffic.sent if 400 <= s.status < 500)
    assert usage["errors"] == 0
    assert usage["rate_limited"] == 0


@pytest.mark.parametrize("path", ["/admin/request-log", "/admin/usage"])
async def test_admin_views_need_the_admin_scope(gateway: httpx.AsyncClient, traffic: Traffic, path: str) -> None:
    anonymous = await gateway.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = await gateway.get(path, headers=bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."))
    assert forged.status_code == 401
    user = await gateway.get(path, headers=bearer(traffic.token))
    assert user.status_code == 403
    assert 'error="insufficient_scope"' in user.headers["www-authenticate"]
