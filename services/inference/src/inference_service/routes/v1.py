"""The simple JSON API: ``/v1/models``, metadata, JSON and CSV predictions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from ..csv_io import compact_rows, parse_csv, parse_typed_csv, predictions_csv
from ..deps import PredictModel, ReadModel, ReadModelsClaims, Registry, Settings, may_list
from ..json_body import OrjsonResponse, parse_json, read_body, read_form
from ..model_store import LoadedModel, ModelRegistry
from ..offload import run_cpu
from ..prediction import predict, v1_json
from ..schemas import (
    CSV_REQUEST_BODY,
    ModelDetail,
    ModelList,
    PredictRequest,
    PredictResponse,
    json_request_body,
)
from ..settings import InferenceSettings
from ..typed_input import records_input
from ..validation import InputError, Problem

router = APIRouter(prefix="/v1", tags=["v1"])


def summary(registry: ModelRegistry, model: LoadedModel, scopes: Collection[str]) -> dict[str, Any]:
    """What the caller may see of a model: versions and aliases it may use."""
    versions = [m.version for m in registry.models(model.name) if may_list(registry, m, scopes)]
    return {
        "name": model.name,
        "default_version": registry.default_version(model.name),
        "versions": versions,
        "aliases": {a: v for a, v in registry.aliases(model.name).items() if v in versions},
        "required_scope": registry.required_scope(model),
        "task": model.metadata.task,
        "features": list(model.features),
        "schema": model.schema.to_json(),
        "classes": list(model.classes),
        "probabilities": model.metadata.probabilities,
        "metrics": dict(model.metadata.metrics),
    }


@router.get("/models", response_model=ModelList, summary="List the models this token may use")
async def list_models(claims: ReadModelsClaims, registry: Registry) -> OrjsonResponse:
    models = [
        summary(registry, m, claims.scopes)
        for name in registry.names()
        if (m := registry.get(name)) is not None and may_list(registry, m, claims.scopes)
    ]
    return OrjsonResponse({"models": models})


def detail(registry: ModelRegistry, model: LoadedModel, scopes: Collection[str]) -> dict[str, Any]:
    return {
        **summary(registry, model, scopes),
        "version": model.version,
        "input_schema": model.schema.record_schema(),
        "metadata": dict(model.metadata.raw),
    }


@router.get("/models/{name}", response_model=ModelDetail, summary="Model metadata, input schema and metrics")
async def model_detail(request: Request, registry: Registry, model: ReadModel) -> OrjsonResponse:
    return OrjsonResponse(detail(registry, model, request.state.claims.scopes))


@router.get("/models/{name}/versions/{version}", response_model=ModelDetail, summary="One model version's metadata")
async def model_version_detail(request: Request, registry: Registry, model: ReadModel) -> OrjsonResponse:
    return OrjsonResponse(detail(registry, model, request.state.claims.scopes))


def predict_json_body(model: LoadedModel, body: bytes, max_rows: int) -> bytes:
    """Parse, validate, predict and encode: everything CPU-bound, so it can run in a thread."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InputError([Problem(("body",), 'expected a JSON object {"instances": [...]}', "value_error.missing")])
    unknown = sorted(k for k in payload if k != "instances")
    if unknown:
        raise InputError([Problem(("body", unknown[0]), f"unknown fields {unknown}", "value_error.extra")])
    return v1_json(model, predict(model, records_input(model.schema, payload["instances"], max_rows)))


PREDICT_DOC: dict[str, Any] = {
    "response_model": PredictResponse,
    "responses": {413: {"description": "too many rows or too large a body"}, 422: {"description": "bad input"}},
    "openapi_extra": json_request_body(PredictRequest),
}


@router.post("/models/{name}/predict", summary="Predict from JSON records or rows", **PREDICT_DOC)
@router.post("/models/{name}/versions/{version}/predict", summary="Predict with one model version", **PREDICT_DOC)
async def predict_json(request: Request, model: PredictModel, settings: Settings) -> Response:
    body = await read_body(request, settings.max_upload_bytes)
    content = await run_cpu(settings, len(body), predict_json_body, model, body, settings.max_batch_rows)
    return Response(content, media_type="application/json")


async def uploaded_csv(request: Request, settings: InferenceSettings) -> bytes:
    """The one file part of a CSV upload."""
    form = await read_form(request, settings.max_upload_bytes, parts="a 'file' part", max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InputError([Problem(("body", "file"), "missing the 'file' part (a CSV file)", "value_error.missing")])
        return await upload.read()
    finally:
        await form.close()


@router.post(
    "/models/{name}/predict-csv",
    summary="Predict a CSV file (JSON, or CSV with Accept: text/csv)",
    openapi_extra=CSV_REQUEST_BODY,
)
@router.post(
    "/models/{name}/versions/{version}/predict-csv",
    summary="Predict a CSV file with one model version",
    openapi_extra=CSV_REQUEST_BODY,
)
async def predict_csv(request: Request, model: PredictModel, settings: Settings) -> Response:
    data = await uploaded_csv(request, settings)
    as_csv = "text/csv" in request.headers.get("accept", "")
    content = await run_cpu(settings, len(data), _score_csv, model, data, settings.max_batch_rows, as_csv)
    return Response(content, media_type="text/csv; charset=utf-8" if as_csv else "application/json")


def _score_csv(model: LoadedModel, data: bytes, max_rows: int, as_csv: bool) -> bytes:
    inputs: Sequence[Sequence[Any]]
    if model.schema.matrix_ready:
        matrix = parse_csv(data, model.features, max_rows, model.schema)
        result = predict(model, matrix)
        inputs = compact_rows(matrix) if as_csv else ()
    else:
        frame, inputs = parse_typed_csv(data, model.schema, max_rows)
        result = predict(model, frame)
    if as_csv:
        return predictions_csv(model.features, inputs, result).encode()
    return v1_json(model, result)
