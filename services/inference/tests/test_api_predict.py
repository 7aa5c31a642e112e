"""``POST /v1/models/{name}/predict``: answers, versions, limits, and every kind of bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httpx
import pytest
from inference_service.settings import InferenceSettings
from modelgate_shared.testing import TokenSigner

from .conftest import FEATURES, HEALTHY_ROW, PIMA_ROW, serve

URL = "/v1/models/diabetes/predict"


async def test_predicts_label_and_probabilities(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.post(
        URL, json={"instances": [PIMA_ROW, HEALTHY_ROW]}, headers=signer.auth_header("predict")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "diabetes"
    assert body["version"] == "2"  # the newest version is the default
    sick, healthy = body["predictions"]
    assert sick["label"] == 1 and healthy["label"] == 0
    for prediction in (sick, healthy):
        assert set(prediction["probabilities"]) == {"0", "1"}
        assert math.isclose(sum(prediction["probabilities"].values()), 1.0, abs_tol=1e-9)
    assert sick["probabilities"]["1"] > 0.5 > healthy["probabilities"]["1"]
    assert response.headers["x-request-id"]


async def test_positional_rows_match_records(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    positional = [PIMA_ROW[f] for f in FEATURES]
    by_name = await client.post(URL, json={"instances": [PIMA_ROW]}, headers=signer.auth_header())
    by_position = await client.post(URL, json={"instances": [positional]}, headers=signer.auth_header())
    assert by_position.status_code == 200, by_position.text
    assert by_position.json()["predictions"] == by_name.json()["predictions"]


@pytest.mark.parametrize("path", ["/v1/models/diabetes/versions/1/predict", "/v1/models/diabetes/predict?version=1"])
async def test_explicit_version(client: httpx.AsyncClient, signer: TokenSigner, path: str) -> None:
    response = await client.post(path, json={"instances": [PIMA_ROW]}, headers=signer.auth_header())
    assert response.status_code == 200, response.text
    assert response.json()["version"] == "1"


async def test_unknown_model_and_version_are_404(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    missing = await client.post("/v1/models/nope/predict", json={"instances": [PIMA_ROW]}, headers=signer.auth_header())
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"] and "diabetes" in missing.json()["detail"]
    old = await client.post(URL + "?version=9", json={"instances": [PIMA_ROW]}, headers=signer.auth_header())
    assert old.status_code == 404
    assert "'9'" in old.json()["detail"]


def _without(field: str) -> dict[str, float]:
    return {k: v for k, v in PIMA_ROW.items() if k != field}


ROW0 = ["body", "instances", 0]
BAD_BODIES = [
    pytest.param({"instances": [_without("plas")]}, [*ROW0, "plas"], "missing feature 'plas'", id="missing"),
    pytest.param({"instances": [{**PIMA_ROW, "bmi": 1}]}, [*ROW0, "bmi"], "unknown feature 'bmi'", id="unknown"),
    pytest.param(
        {"instances": [PIMA_ROW, {**PIMA_ROW, "age": "fifty"}]},
        ["body", "instances", 1, "age"],
        "row 1, feature 'age': must be a number",
        id="string",
    ),
    pytest.param({"instances": [{**PIMA_ROW, "age": None}]}, ["body", "instances", 0, "age"], "got null", id="null"),
    pytest.param({"instances": [{**PIMA_ROW, "age": True}]}, ["body", "instances", 0, "age"], "got bool", id="bool"),
    pytest.param({"instances": [[1, 2, 3]]}, ["body", "instances", 0], "expected 8 values", id="short-row"),
    pytest.param({"instances": ["row"]}, ["body", "instances", 0], "must be an object", id="scalar-row"),
    pytest.param({"instances": []}, ["body", "instances"], "empty", id="empty"),
    pytest.param({"instances": {"preg": 1}}, ["body", "instances"], "must be a list", id="not-a-list"),
    pytest.param({"rows": [PIMA_ROW]}, ["body"], '{"instances"', id="no-instances"),
    pytest.param({"instances": [PIMA_ROW], "extra": 1}, ["body", "extra"], "unknown fields", id="extra-key"),
    pytest.param([PIMA_ROW], ["body"], '{"instances"', id="bare-list"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "loc", "message"), BAD_BODIES)
async def test_bad_input_is_422_naming_row_and_field(
    client: httpx.AsyncClient, signer: TokenSigner, body: object, loc: list[object], message: str
) -> None:
    response = await client.post(URL, json=body, headers=signer.auth_header())
    assert response.status_code == 422, response.text
    (problem, *_) = response.json()["detail"]
    assert problem["loc"] == loc
    assert message in problem["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers_are_422(client: httpx.AsyncClient, signer: TokenSigner, literal: str) -> None:
    row = ", ".join(f'"{f}": {literal if f == "mass" else 1}' for f in FEATURES)
    response = await client.post(
        URL,
        content=f'{{"instances": [{{{row}}}]}}',
        headers={**signer.auth_header(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "instances", 0, "mass"]
    assert "finite" in problem["msg"]


async def test_huge_integer_is_422(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.post(URL, json={"instances": [{**PIMA_ROW, "age": 10**400}]}, headers=signer.auth_header())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "instances", 0, "age"]


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"instances": [', "\u00e9".encode("latin-1")])
async def test_malformed_json_is_422(client: httpx.AsyncClient, signer: TokenSigner, content: bytes) -> None:
    response = await client.post(
        URL, content=content, headers={**signer.auth_header(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "JSON" in response.json()["detail"][0]["msg"]


async def test_errors_are_bounded_for_a_bad_batch(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.post(URL, json={"instances": [_without("plas")] * 500}, headers=signer.auth_header())
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert 1 < len(problems) <= 20
    assert [p["loc"][2] for p in problems[:3]] == [0, 1, 2]


async def test_batch_over_the_row_limit_is_413(
    make_settings: Callable[..., InferenceSettings], signer: TokenSigner
) -> None:
    async with serve(make_settings(max_batch_rows=5)) as http:
        ok = await http.post(URL, json={"instances": [PIMA_ROW] * 5}, headers=signer.auth_header())
        over = await http.post(URL, json={"instances": [PIMA_ROW] * 6}, headers=signer.auth_header())
    assert ok.status_code == 200
    assert over.status_code == 413
    assert "6 rows exceed the limit of 5" in over.json()["detail"]


async def test_body_over_the_size_limit_is_413(
    make_settings: Callable[..., InferenceSettings], signer: TokenSigner
) -> None:
    async with serve(make_settings(max_upload_bytes=2048)) as http:
        response = await http.post(URL, json={"instances": [PIMA_ROW] * 40}, headers=signer.auth_header())
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]


async def test_big_bodies_run_in_a_worker_thread(
    make_settings: Callable[..., InferenceSettings], signer: TokenSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    offloaded: list[str] = []
    original = anyio.to_thread.run_sync

    async def spy(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        offloaded.append(getattr(func, "__name__", repr(func)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    rows = [PIMA_ROW, HEALTHY_ROW] * 2500
    async with serve(make_settings(offload_min_body_bytes=10_000)) as http:
        offloaded.clear()  # loading the models at start-up rightly runs in a thread
        small = await http.post(URL, json={"instances": [PIMA_ROW]}, headers=signer.auth_header())
        assert small.status_code == 200
        # Nothing at all, dependencies included: each hop costs more than the whole prediction.
        assert offloaded == []
        big = await http.post(URL, json={"instances": rows}, headers=signer.auth_header())
    assert big.status_code == 200
    assert "predict_json_body" in offloaded
    assert [p["label"] for p in big.json()["predictions"]] == [1, 0] * 2500
