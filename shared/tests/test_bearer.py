from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from modelgate_shared.bearer import require_scopes
from modelgate_shared.request_context import RequestIdMiddleware
from modelgate_shared.tokens import AccessClaims, FileKeySource, TokenVerifier

from .conftest import AUDIENCE, ISSUER


@pytest.fixture
def client(jwks_file: Path) -> httpx.AsyncClient:
    app = FastAPI()
    app.state.verifier = TokenVerifier(FileKeySource(jwks_file), issuer=ISSUER, audience=AUDIENCE)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/predict")
    async def predict(claims: Annotated[AccessClaims, Depends(require_scopes("predict"))]) -> dict[str, str]:
        return {"sub": claims.sub}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def test_missing_token_is_401_without_error_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/predict")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer") and "error=" not in challenge


async def test_invalid_token_is_401_invalid_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/predict", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["detail"] == "malformed token"


async def test_missing_scope_is_403_insufficient_scope(client: httpx.AsyncClient, sign: Callable[..., str]) -> None:
    response = await client.get("/predict", headers={"Authorization": f"Bearer {sign(scope='models:read')}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert "predict" in response.json()["detail"]


async def test_valid_token_passes(client: httpx.AsyncClient, sign: Callable[..., str]) -> None:
    response = await client.get("/predict", headers={"Authorization": f"Bearer {sign(sub='u-1')}"})
    assert response.status_code == 200
    assert response.json() == {"sub": "u-1"}


async def test_request_id_is_kept_when_well_formed_and_replaced_otherwise(client: httpx.AsyncClient) -> None:
    kept = await client.get("/predict", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/predict", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32
