"""Model metadata endpoints and health/readiness."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
from inference_service.settings import InferenceSettings
from modelgate_shared.testing import TokenSigner

from .conftest import FEATURES, serve


async def test_list_models(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.get("/v1/models", headers=signer.auth_header("models:read"))
    assert response.status_code == 200
    (model,) = response.json()["models"]
    assert model["name"] == "diabetes"
    assert (model["default_version"], model["versions"]) == ("2", ["1", "2"])
    assert model["features"] == list(FEATURES)
    assert model["classes"] == [0, 1]
    assert 0.5 < model["metrics"]["accuracy"] <= 1.0


async def test_model_detail_has_schema_metrics_and_metadata(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.get("/v1/models/diabetes", headers=signer.auth_header("models:read"))
    body = response.json()
    assert body["version"] == "2"
    assert body["input_schema"]["required"] == list(FEATURES)
    assert body["input_schema"]["additionalProperties"] is False
    metadata = body["metadata"]
    assert metadata["features"][0] == {"name": "preg", "dtype": "number"}
    assert body["schema"][0] == {"name": "preg", "dtype": "number", "nullable": False}
    assert body["aliases"] == {"default": "2"}
    assert len(metadata["model_sha256"]) == 64 and len(metadata["training_data"]["sha256"]) == 64
    assert metadata["sklearn_version"] and metadata["created_at"]
    old = await client.get("/v1/models/diabetes/versions/1", headers=signer.auth_header("models:read"))
    assert old.json()["version"] == "1"
    also_old = await client.get("/v1/models/diabetes?version=1", headers=signer.auth_header("models:read"))
    assert also_old.json()["version"] == "1"


async def test_unknown_model_is_404(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.get("/v1/models/iris", headers=signer.auth_header("models:read"))
    assert response.status_code == 404
    assert "iris" in response.json()["detail"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"keys": "ok", "models": "ok"}


async def test_not_ready_until_keys_appear(
    make_settings: Callable[..., InferenceSettings], jwks_path: Path, tmp_path: Path, signer: TokenSigner
) -> None:
    # Auth may publish its keys after inference starts: serve, report 503, then recover.
    late = tmp_path / "jwks.json"
    async with serve(make_settings(public_keys=late)) as http:
        assert (await http.get("/healthz")).status_code == 200
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["keys"].startswith("failed")
        assert (await http.get("/v2/health/ready")).status_code == 503
        shutil.copy(jwks_path, late)
        assert (await http.get("/readyz")).status_code == 200
        response = await http.get("/v1/models", headers=signer.auth_header("models:read"))
        assert response.status_code == 200


async def test_openapi_documents_the_bodies(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]
    assert "instances" in predict["requestBody"]["content"]["application/json"]["schema"]["properties"]
    upload = spec["paths"]["/v1/models/{name}/predict-csv"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
