"""The e2e suite starts the real stack through the same launcher as ``make up``."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from modelgate_shared.stack import DEFAULT_TRAINING_DATA, Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
LOCAL_PIMA = ROOT.parent / "shared" / "data" / "pima-indians-diabetes.csv"

ADMIN_USERNAME = "e2e-admin"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"
# Small enough to reach in a test, large enough that the other tests never hit it.
PREDICT_LIMIT_PER_MINUTE = 120


def training_data() -> str:
    if value := os.environ.get("MODELGATE_TRAINING_DATA"):
        return value
    return str(LOCAL_PIMA) if LOCAL_PIMA.exists() else DEFAULT_TRAINING_DATA


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    extra_env = {
        "MODELGATE_AUTH_BCRYPT_ROUNDS": "4",
        "MODELGATE_ADMIN_USERNAME": ADMIN_USERNAME,
        "MODELGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT": f"{PREDICT_LIMIT_PER_MINUTE}/minute",
        "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "0.1",
    }
    with running_stack(training_data=training_data(), extra_env=extra_env) as running:
        yield running


@pytest.fixture(scope="session")
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        yield client


async def signup_and_login(gateway: httpx.AsyncClient, scope: str | None = None) -> tuple[str, str]:
    username = f"user-{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    response = await gateway.post(
        "/auth/users", json={"username": username, "password": password, "email": f"{username}@example.com"}
    )
    assert response.status_code == 201, response.text
    form = {"grant_type": "password", "username": username, "password": password}
    if scope:
        form["scope"] = scope
    token = await gateway.post("/auth/token", data=form)
    assert token.status_code == 200, token.text
    return username, token.json()["access_token"]
