"""The walking skeleton's promise: sign up, log in, predict, all through the gateway."""

from __future__ import annotations

import asyncio
import math

import asyncpg
import httpx
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import Stack

from ..conftest import ADMIN_PASSWORD, ADMIN_USERNAME, PREDICT_LIMIT_PER_MINUTE, signup_and_login

PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}


async def test_signup_token_predict(gateway: httpx.AsyncClient) -> None:
    _, token = await signup_and_login(gateway)
    response = await gateway.post(
        "/v1/models/diabetes/predict",
        json={"instances": [PIMA_ROW]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "diabetes"
    (prediction,) = body["predictions"]
    # The textbook row is a diabetic patient, and the tutorial's model says so.
    assert prediction["label"] == 1
    probabilities = prediction["probabilities"]
    assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-6)
    assert probabilities["1"] > 0.5
    assert response.headers["x-request-id"]


async def test_wrong_password_is_invalid_grant_through_the_gateway(gateway: httpx.AsyncClient) -> None:
    username, _ = await signup_and_login(gateway)
    token = await gateway.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": "wrong password!!"}
    )
    # Auth's RFC 6749 error body passes through the gateway unchanged.
    assert token.status_code == 400
    assert token.json() == {"error": "invalid_grant", "error_description": "invalid username or password"}


async def test_predict_without_valid_token_is_401(gateway: httpx.AsyncClient) -> None:
    missing = await gateway.post("/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    forged = await gateway.post(
        "/v1/models/diabetes/predict",
        json={"instances": [PIMA_ROW]},
        headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
    )
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]


async def test_bad_input_is_422_naming_the_field(gateway: httpx.AsyncClient) -> None:
    _, token = await signup_and_login(gateway)
    row = {k: v for k, v in PIMA_ROW.items() if k != "plas"}
    response = await gateway.post(
        "/v1/models/diabetes/predict", json={"instances": [row]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422
    assert "plas" in response.text


async def test_each_proxied_request_leaves_one_log_row(gateway: httpx.AsyncClient, stack: Stack) -> None:
    assert stack.postgres is not None
    marker_ids = [f"e2e-log-{i}" for i in range(7)]
    for request_id in marker_ids:
        response = await gateway.get("/v1/models", headers={"X-Request-ID": request_id})
        assert response.headers["x-request-id"] == request_id
    conn = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    try:
        rows: list[asyncpg.Record] = []
        for _ in range(100):  # the writer batches off the request path; give it a moment
            rows = await conn.fetch(
                "SELECT request_id, method, path, status FROM request_log WHERE request_id = ANY($1::text[])",
                marker_ids,
            )
            if len(rows) >= len(marker_ids):
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert sorted(r["request_id"] for r in rows) == sorted(marker_ids)
    assert {(r["method"], r["path"], r["status"]) for r in rows} == {("GET", "/v1/models", 401)}


async def test_client_over_its_limit_gets_429(gateway: httpx.AsyncClient) -> None:
    _, token = await signup_and_login(gateway)
    headers = {"Authorization": f"Bearer {token}"}
    statuses = []
    for _ in range(PREDICT_LIMIT_PER_MINUTE + 20):
        response = await gateway.post("/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=headers)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()
            break
    assert statuses[0] == 200
    assert statuses[-1] == 429
    # The limit is per identity: another user is unaffected.
    _, other = await signup_and_login(gateway)
    response = await gateway.post(
        "/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers={"Authorization": f"Bearer {other}"}
    )
    assert response.status_code == 200


async def test_admin_from_environment_can_log_in(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/auth/token",
        data={"grant_type": "password", "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "scope": "admin"},
    )
    assert response.status_code == 200, response.text
    assert "admin" in response.json()["scope"].split()
