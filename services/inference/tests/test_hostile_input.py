"""Hostile input on every prediction endpoint: a 4xx with a message (V1 ``detail``, V2 ``error``),
never a 500; an unexpected failure is a JSON 500 whose log holds no request data."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi.exceptions import RequestValidationError
from inference_service.errors import _validation_error
from modelgate_shared.testing import TokenSigner
from starlette.requests import Request

from .conftest import FEATURES, PIMA_ROW

V1 = "/v1/models/diabetes/predict"
CSV = "/v1/models/diabetes/predict-csv"
V2 = "/v2/models/diabetes/infer"
AS_JSON = {"content-type": "application/json"}
DEEP = b"[" * 10_000 + b"]" * 10_000
HUGE_INT = b"9" * 5000  # beyond Python's 4300-digit int parsing limit


def row_json(value: bytes) -> bytes:
    cells = b", ".join(b'"%s": %s' % (f.encode(), value if f == "plas" else b"1") for f in FEATURES)
    return b'{"instances": [{' + cells + b"}]}"


def v2_json(shape: bytes, data: bytes = b"[1]") -> bytes:
    return b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": %s, "data": %s}]}' % (shape, data)


def assert_client_error(response: httpx.Response, protocol: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body["error"] if protocol == "v2" else body["detail"], str | list)
    assert len(response.content) < 10_000, len(response.content)


@pytest.mark.parametrize(
    "body",
    [
        row_json(HUGE_INT),
        row_json(b"1" + b"0" * 400),
        row_json(b"1e400"),
        row_json(b'"\\u0000"'),
        row_json(b'"' + b"x" * 100_000 + b'"'),
        DEEP,
        b'{"instances": ' + b"[" * 900 + b"]" * 900 + b"}",
        b"\xff\xfe",
        b"",
    ],
    ids=[
        "5000-digit int",
        "10**400",
        "1e400",
        "NUL",
        "100 KB string",
        "10,000 levels",
        "900 levels",
        "not UTF-8",
        "empty",
    ],
)
async def test_v1_predict_refuses_hostile_json_with_a_422(
    client: httpx.AsyncClient, signer: TokenSigner, body: bytes
) -> None:
    response = await client.post(V1, content=body, headers={**AS_JSON, **signer.auth_header("predict")})
    assert_client_error(response, "v1")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (v2_json(b"[" + b", ".join([b"1" + b"0" * 400] * 11) + b"]"), {}),  # a count of 4,400 digits
        (v2_json(b"[9223372036854775808, 8]"), {}),  # beyond int64
        (v2_json(b"[" + b", ".join([b"1"] * 100) + b"]"), {}),  # more dimensions than numpy has
        (v2_json(b"[1, 8]", b"[" + HUGE_INT + b"]"), {}),
        (v2_json(b"[1, 8]", b"[" + b"1" + b"0" * 400 + b"]"), {}),
        (v2_json(b"[1, 8]", b"[1e400]"), {}),
        (DEEP, {}),
        (b'{"id": "a\\u0000\\ud800", "inputs": []}', {}),
        (v2_json(b"[1, 8]"), {"Inference-Header-Content-Length": b"\xb2"}),  # "²" passes str.isdigit
        (v2_json(b"[1, 8]"), {"Inference-Header-Content-Length": b"9" * 5000}),
        (b"inputs=1", {"content-type": "application/x-www-form-urlencoded"}),
    ],
    ids=[
        "count of 4400 digits",
        "dimension beyond int64",
        "100 dimensions",
        "5000-digit int",
        "10**400",
        "1e400",
        "10,000 levels",
        "NUL and surrogate id",
        "superscript header length",
        "5000-digit header length",
        "form body",
    ],
)
async def test_v2_infer_refuses_hostile_json_with_a_400(
    client: httpx.AsyncClient, signer: TokenSigner, body: bytes, headers: dict[str, Any]
) -> None:
    response = await client.post(V2, content=body, headers={**AS_JSON, **signer.auth_header("predict"), **headers})
    assert_client_error(response, "v2")


@pytest.mark.parametrize(
    "upload",
    [
        {"files": {"file": ("a.csv", b"preg,plas\n1,2\x00\n", "text/csv")}},
        {"files": {"file": ("a.csv", ",".join(f"c{i}" for i in range(20_000)).encode() + b"\n1\n", "text/csv")}},
        {"files": {"file": ("a.csv", ",".join(FEATURES).encode() + b"\n" + b"9" * 100_000 + b",1,1,1,1,1,1,1\n")}},
        {"files": {"file": ("a.csv", b"\xff\xfe\x00", "text/csv")}},
        {"content": b'{"file": "x"}', "headers": AS_JSON},
        {"content": b"--x\r\n\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
    ],
    ids=["NUL", "20,000 columns", "100 KB cell", "not UTF-8", "JSON body", "broken multipart"],
)
async def test_csv_upload_refuses_hostile_files_with_a_422(
    client: httpx.AsyncClient, signer: TokenSigner, upload: dict[str, Any]
) -> None:
    headers = {**upload.pop("headers", {}), **signer.auth_header("predict")}
    response = await client.post(CSV, headers=headers, **upload)
    assert_client_error(response, "v1")


async def _handle(path: str, errors: list[dict[str, Any]]) -> Any:
    request = Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""})
    return await _validation_error(request, RequestValidationError(errors))


async def test_validation_errors_go_through_the_shared_redaction_in_both_protocols() -> None:
    errors = [{"type": "value_error", "loc": ("query", "token"), "msg": "bad", "input": "tok-SECRET"}]
    v1 = await _handle(V1, errors)
    v2 = await _handle(V2, errors)
    assert v1.status_code == 422 and b"tok-SECRET" not in v1.body
    assert v1.body.startswith(b'{"detail":[{"type":"value_error","loc":["query","token"]')
    assert (v2.status_code, v2.body) == (400, b'{"error":"query.token: bad"}')


async def test_an_unexpected_failure_is_a_json_500_without_request_data_in_the_log(
    client: httpx.AsyncClient,
    signer: TokenSigner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"cannot encode {args!r}")  # a message quoting the input, as libraries do

    monkeypatch.setattr("inference_service.routes.v1.v1_json", broken)
    monkeypatch.setattr("inference_service.routes.v2.infer_response", broken)
    caplog.set_level(logging.DEBUG)
    marker = 123.456789
    row = {**PIMA_ROW, "mass": marker}
    v1 = await client.post(V1, json={"instances": [row]}, headers=signer.auth_header("predict"))
    v2 = await client.post(
        V2,
        json={"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP64", "data": list(row.values())}]},
        headers=signer.auth_header("predict"),
    )
    for response in (v1, v2):
        assert response.status_code == 500
        body = response.json()
        assert body["error"] == "internal_error" and body["detail"] == "internal error"
        assert body["request_id"] == response.headers["x-request-id"]
    assert "ValueError" in caplog.text and "POST /v1/models/{name}/predict" in caplog.text
    assert str(marker) not in caplog.text
