"""Open Inference Protocol (V2) over JSON and the binary tensor extension, errors as ``{"error"}``."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httpx
import numpy as np
import pytest
from modelgate_shared.testing import TokenSigner

from .conftest import FEATURES, HEALTHY_ROW, PIMA_ROW

INFER = "/v2/models/diabetes/infer"
SICK = [float(PIMA_ROW[f]) for f in FEATURES]
HEALTHY = [float(HEALTHY_ROW[f]) for f in FEATURES]


def matrix_input(rows: list[list[float]], datatype: str = "FP64") -> dict[str, object]:
    return {"name": "input", "shape": [len(rows), len(FEATURES)], "datatype": datatype, "data": rows}


async def test_health_and_server_metadata_are_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    ready = await client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert (await client.get("/v2")).json()["extensions"] == ["binary_tensor_data"]


async def test_model_metadata_and_ready(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    meta = await client.get("/v2/models/diabetes", headers=signer.auth_header())
    assert meta.json() == {
        "name": "diabetes",
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 8]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
        ],
    }
    ready = await client.get("/v2/models/diabetes/versions/1/ready", headers=signer.auth_header())
    assert ready.json() == {"name": "diabetes", "version": "1", "ready": True}
    missing = await client.get("/v2/models/nope/ready", headers=signer.auth_header())
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]


async def test_infer_json(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    body = {"id": "req-42", "inputs": [matrix_input([SICK, HEALTHY])]}
    response = await client.post(INFER, json=body, headers=signer.auth_header())
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["id"], result["model_name"], result["model_version"]) == ("req-42", "diabetes", "2")
    label, probabilities = result["outputs"]
    assert label == {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]}
    assert probabilities["shape"] == [2, 2] and probabilities["datatype"] == "FP64"
    grid = np.array(probabilities["data"]).reshape(2, 2)
    assert np.allclose(grid.sum(axis=1), 1.0)
    assert grid[0, 1] > 0.5 > grid[1, 1]


async def test_infer_matches_v1(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    v1 = await client.post("/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=signer.auth_header())
    v2 = await client.post(INFER, json={"inputs": [matrix_input([SICK])]}, headers=signer.auth_header())
    assert v2.json()["outputs"][1]["data"] == list(v1.json()["predictions"][0]["probabilities"].values())


async def test_per_feature_inputs_and_other_numeric_types(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    inputs = [
        {"name": f, "shape": [2, 1], "datatype": "FP32", "data": [[PIMA_ROW[f]], [HEALTHY_ROW[f]]]}
        for f in reversed(FEATURES)
    ]
    response = await client.post(
        INFER, json={"inputs": inputs, "outputs": [{"name": "label"}]}, headers=signer.auth_header()
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]}]
    ints = matrix_input([[int(v) for v in HEALTHY]], "INT32")
    assert (await client.post(INFER, json={"inputs": [ints]}, headers=signer.auth_header())).status_code == 200


async def test_binary_tensor_extension(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    tensor = np.array([SICK, HEALTHY], dtype="<f4")
    header = {
        "inputs": [
            {"name": "input", "shape": [2, 8], "datatype": "FP32", "parameters": {"binary_data_size": tensor.nbytes}}
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
    }
    head = httpx.Request("POST", "/", json=header).content
    response = await client.post(
        INFER,
        content=head + tensor.tobytes(),
        headers={
            **signer.auth_header(),
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    result = httpx.Response(200, content=response.content[:size]).json()
    label, probabilities = result["outputs"]
    assert label["parameters"] == {"binary_data_size": 16} and "data" not in label
    assert struct.unpack("<2q", response.content[size:]) == (1, 0)
    assert len(probabilities["data"]) == 4


BAD_REQUESTS = [
    pytest.param({"inputs": []}, "inputs must be a non-empty list", id="no-inputs"),
    pytest.param({"inputs": [matrix_input([SICK[:7]])]}, "values do not fill shape", id="too-few-values"),
    pytest.param(
        {"inputs": [{"name": "input", "shape": [1, 7], "datatype": "FP64", "data": SICK[:7]}]},
        "must be [rows, 8]",
        id="wrong-width",
    ),
    pytest.param({"inputs": [matrix_input([SICK], "BYTES")]}, "datatype 'BYTES' is not supported", id="bytes"),
    pytest.param({"inputs": [matrix_input([SICK], "BOOL")]}, "datatype 'BOOL' is not supported", id="bool-type"),
    pytest.param({"inputs": [matrix_input([[*SICK[:7], "x"]])]}, "element 7 must be a number", id="string-value"),
    pytest.param({"inputs": [matrix_input([[*SICK[:7], True]])]}, "element 7 must be a number", id="bool-value"),
    pytest.param({"inputs": [matrix_input([])]}, "batch is empty", id="empty-batch"),
    pytest.param(
        {"inputs": [{"name": "plas", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
        "missing ['preg'",
        id="missing-feature-inputs",
    ),
    pytest.param({"inputs": [matrix_input([SICK])], "outputs": [{"name": "score"}]}, "unknown output", id="output"),
    pytest.param({"inputs": [matrix_input([SICK])], "id": 7}, "id must be a string", id="id-type"),
    pytest.param({"inputs": [{"shape": [1, 8], "datatype": "FP64", "data": SICK}]}, "without a name", id="no-name"),
    pytest.param({"inputs": [{**matrix_input([SICK]), "shape": "1x8"}]}, "shape must be a list", id="shape-type"),
    pytest.param([1, 2], "must be a JSON object", id="not-object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
async def test_bad_request_is_400_with_error(
    client: httpx.AsyncClient, signer: TokenSigner, body: object, message: str
) -> None:
    response = await client.post(INFER, json=body, headers=signer.auth_header())
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
async def test_non_finite_values_are_400_naming_row_and_feature(
    client: httpx.AsyncClient, signer: TokenSigner, literal: str
) -> None:
    data = ", ".join(["1"] * 8 + ["1"] * 5 + [literal] + ["1"] * 2)
    body = f'{{"inputs": [{{"name": "input", "shape": [2, 8], "datatype": "FP64", "data": [{data}]}}]}}'
    response = await client.post(
        INFER, content=body, headers={**signer.auth_header(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "row 1, feature 'mass'" in response.json()["error"]


async def test_binary_size_mismatch_is_400(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    head = (
        b'{"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP64", "parameters": {"binary_data_size": 64}}]}'
    )
    for tail, message in ((b"\0" * 8, "body ends before"), (b"\0" * 72, "not claimed")):
        response = await client.post(
            INFER,
            content=head + tail,
            headers={**signer.auth_header(), "Inference-Header-Content-Length": str(len(head))},
        )
        assert response.status_code == 400
        assert message in response.json()["error"]
    response = await client.post(
        INFER, content=head, headers={**signer.auth_header(), "Inference-Header-Content-Length": "999"}
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]


async def test_malformed_json_is_400(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.post(
        INFER, content=b"{oops", headers={**signer.auth_header(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


async def test_explicit_version_and_unknown_model(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    body = {"inputs": [matrix_input([SICK])]}
    v1 = await client.post("/v2/models/diabetes/versions/1/infer", json=body, headers=signer.auth_header())
    assert v1.json()["model_version"] == "1"
    missing = await client.post("/v2/models/diabetes/versions/7/infer", json=body, headers=signer.auth_header())
    assert missing.status_code == 404
    assert "no version '7'" in missing.json()["error"]


async def test_small_infer_runs_without_a_worker_thread(
    client: httpx.AsyncClient, signer: TokenSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    offloaded: list[object] = []
    original = anyio.to_thread.run_sync

    async def spy(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        offloaded.append(func)
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    response = await client.post(INFER, json={"inputs": [matrix_input([SICK])]}, headers=signer.auth_header())
    assert response.status_code == 200, response.text
    # Dependencies included: a thread round trip costs more than this whole request's work.
    assert offloaded == []
