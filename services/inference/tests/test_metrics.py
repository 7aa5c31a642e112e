"""``GET /metrics``: predictions counted per model, version, protocol and status, read back
from the Prometheus text exposition as a scraper reads it."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest
from inference_service.metrics import InferenceMetrics
from modelgate_shared.testing import TokenSigner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import FEATURES, HEALTHY_ROW, PIMA_ROW

ROW = [float(PIMA_ROW[f]) for f in FEATURES]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """A sample's value; 0 when the exposition has no such sample (never counted)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def counted(text: str) -> float:
    """Every prediction request counted, whatever its labels."""
    return sum(v for (name, _), v in samples(text).items() if name == "inference_requests_total")


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def csv_upload(rows: list[dict[str, float]]) -> dict[str, tuple[str, bytes, str]]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(FEATURES))
    writer.writeheader()
    writer.writerows(rows)
    return {"file": ("batch.csv", out.getvalue().encode(), "text/csv")}


async def test_exposition_is_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")  # no token: internal network only
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert response.headers["cache-control"] == "no-store"
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "inference_requests",
        "inference_request_errors",
        "inference_request_duration_seconds",
        "inference_model_load_failures",
        "inference_models_loaded",
    } <= families
    # Both versions of the test model are loaded.
    assert value(response.text, "inference_models_loaded") == 2


async def test_each_protocol_counts_under_its_model_and_version(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    auth = signer.auth_header()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/models/diabetes/predict", {"json": {"instances": [PIMA_ROW]}}),
        ("/v1/models/diabetes/predict", {"json": {"instances": [HEALTHY_ROW]}}),
        ("/v1/models/diabetes/versions/1/predict", {"json": {"instances": [PIMA_ROW]}}),
        ("/v1/models/diabetes/predict-csv", {"files": csv_upload([PIMA_ROW, HEALTHY_ROW])}),
        ("/v1/models/diabetes/versions/1/predict-csv", {"files": csv_upload([PIMA_ROW])}),
        ("/v2/models/diabetes/infer", {"json": {"inputs": [_tensor([ROW])]}}),
        ("/v2/models/diabetes/versions/1/infer", {"json": {"inputs": [_tensor([ROW, ROW])]}}),
    ]
    for url, body in calls:
        response = await client.post(url, headers=auth, **body)
        assert response.status_code == 200, (url, response.text)

    text = await scrape(client)
    expected = {("2", "v1"): 2, ("1", "v1"): 1, ("2", "v1-csv"): 1, ("1", "v1-csv"): 1, ("2", "v2"): 1, ("1", "v2"): 1}
    for (version, protocol), count in expected.items():
        labels = {"model": "diabetes", "version": version, "protocol": protocol}
        assert value(text, "inference_requests_total", **labels, status="200") == count, labels
        assert value(text, "inference_request_duration_seconds_count", **labels) == count, labels
        assert value(text, "inference_request_duration_seconds_sum", **labels) > 0, labels
        assert value(text, "inference_request_errors_total", **labels) == 0, labels
    assert counted(text) == len(calls)


def _tensor(rows: list[list[float]]) -> dict[str, Any]:
    return {"name": "input", "shape": [len(rows), len(FEATURES)], "datatype": "FP64", "data": rows}


async def test_bad_input_is_an_error_of_its_model(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    bad = await client.post(
        "/v1/models/diabetes/predict", json={"instances": [{"preg": 1}]}, headers=signer.auth_header()
    )
    assert bad.status_code == 422
    bad_v2 = await client.post(
        "/v2/models/diabetes/versions/1/infer", json={"inputs": [_tensor([[1.0]])]}, headers=signer.auth_header()
    )
    assert bad_v2.status_code == 400

    text = await scrape(client)
    v1 = {"model": "diabetes", "version": "2", "protocol": "v1"}
    assert value(text, "inference_requests_total", **v1, status="422") == 1
    assert value(text, "inference_request_errors_total", **v1) == 1
    assert value(text, "inference_request_duration_seconds_count", **v1) == 1
    v2 = {"model": "diabetes", "version": "1", "protocol": "v2"}
    assert value(text, "inference_requests_total", **v2, status="400") == 1
    assert value(text, "inference_request_errors_total", **v2) == 1


async def test_a_request_without_a_resolved_model_is_unknown(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    # Random names must not become label values: all of these count as model="unknown".
    names = ["nope", "x7f3a9", "another-random-name"]
    for name in names:
        missing = await client.post(
            f"/v1/models/{name}/predict", json={"instances": [PIMA_ROW]}, headers=signer.auth_header()
        )
        assert missing.status_code == 404
    no_version = await client.post(
        "/v2/models/diabetes/versions/9/infer", json={"inputs": [_tensor([ROW])]}, headers=signer.auth_header()
    )
    assert no_version.status_code == 404
    no_token = await client.post("/v1/models/diabetes/predict-csv", files=csv_upload([PIMA_ROW]))
    assert no_token.status_code == 401

    text = await scrape(client)
    unknown = {"model": "unknown", "version": ""}
    assert value(text, "inference_requests_total", **unknown, protocol="v1", status="404") == len(names)
    assert value(text, "inference_request_errors_total", **unknown, protocol="v1") == len(names)
    assert value(text, "inference_requests_total", **unknown, protocol="v2", status="404") == 1
    assert value(text, "inference_requests_total", **unknown, protocol="v1-csv", status="401") == 1
    assert counted(text) == len(names) + 2
    for name in names:
        assert f'model="{name}"' not in text


async def test_an_unexpected_failure_counts_as_a_500(
    client: httpx.AsyncClient, signer: TokenSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("broken encoder")

    monkeypatch.setattr("inference_service.routes.v1.v1_json", broken)
    response = await client.post(
        "/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=signer.auth_header()
    )
    assert response.status_code == 500
    text = await scrape(client)
    labels = {"model": "diabetes", "version": "2", "protocol": "v1"}
    assert value(text, "inference_requests_total", **labels, status="500") == 1
    assert value(text, "inference_request_errors_total", **labels) == 1


async def test_metadata_and_other_requests_are_not_counted(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    auth = signer.auth_header()
    for url in [
        "/v1/models",
        "/v1/models/diabetes",
        "/v1/models/diabetes/versions/1",
        "/v2",
        "/v2/models/diabetes",
        "/v2/models/diabetes/ready",
        "/v2/health/ready",
        "/healthz",
        "/readyz",
        "/v1/models/nope",
    ]:
        response = await client.get(url, headers=auth)
        assert response.status_code in (200, 404), url
    # Not prediction endpoints: a GET on a prediction path, and a POST to no route.
    assert (await client.get("/v1/models/diabetes/predict", headers=auth)).status_code == 405
    assert (await client.post("/v1/models/diabetes/predictions", headers=auth)).status_code in (404, 405)

    assert counted(await scrape(client)) == 0


def test_load_failures_and_the_loaded_gauge() -> None:
    metrics = InferenceMetrics()
    metrics.model_load_failed("fraud", "3")
    metrics.model_load_failed("fraud", "3")
    metrics.model_load_failed("churn", "1")
    loaded = [4]
    metrics.track_loaded(lambda: loaded[0])

    text = generate_latest(metrics.registry).decode()
    assert value(text, "inference_model_load_failures_total", model="fraud", version="3") == 2
    assert value(text, "inference_model_load_failures_total", model="churn", version="1") == 1
    assert value(text, "inference_models_loaded") == 4
    loaded[0] = 3  # the callback is asked at each scrape
    assert value(generate_latest(metrics.registry).decode(), "inference_models_loaded") == 3


def test_each_instance_has_its_own_registry() -> None:
    first, second = InferenceMetrics(), InferenceMetrics()
    first.model_load_failed("fraud", "1")
    text = generate_latest(second.registry).decode()
    assert value(text, "inference_model_load_failures_total", model="fraud", version="1") == 0
