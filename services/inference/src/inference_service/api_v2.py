"""Open Inference Protocol (KServe V2) REST endpoints. Errors are ``{"error": "..."}``
(see ``errors.py``); health endpoints are open, like any liveness probe."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from modelgate_shared.bearer import require_scopes
from modelgate_shared.health import run_checks
from modelgate_shared.tokens import AccessClaims
from starlette.responses import JSONResponse, Response

from . import __version__
from .dependencies import get_registry, get_settings, model_from_path
from .json_body import OrjsonResponse, read_body
from .model_store import LoadedModel, ModelRegistry
from .offload import run_cpu
from .prediction import predict
from .readiness import readiness_checks
from .settings import InferenceSettings
from .v2_protocol import infer_response, model_metadata, parse_infer_request, split_body

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
HEADER_LENGTH = "inference-header-content-length"

read_models = require_scopes("models:read")
predict_scope = require_scopes("predict")


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "modelgate-inference", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server readiness (models loaded, token keys available)")
async def ready(request: Request) -> JSONResponse:
    ok, _ = await run_checks(readiness_checks(request.app))
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}", summary="Model metadata")
@router.get("/models/{name}/versions/{version}", summary="Model version metadata")
async def metadata(
    _: AccessClaims = Depends(read_models),
    model: LoadedModel = Depends(model_from_path),
    registry: ModelRegistry = Depends(get_registry),
) -> OrjsonResponse:
    return OrjsonResponse(model_metadata(model, registry.versions(model.name)))


@router.get("/models/{name}/ready", summary="Model readiness")
@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_ready(
    _: AccessClaims = Depends(read_models), model: LoadedModel = Depends(model_from_path)
) -> dict[str, Any]:
    # Models are loaded and checked at start, so one that exists is ready.
    return {"name": model.name, "version": model.version, "ready": True}


def infer_bytes(model: LoadedModel, body: bytes, header_length: str | None, max_rows: int) -> tuple[bytes, int | None]:
    payload, binary = split_body(body, header_length)
    request = parse_infer_request(payload, binary, model, max_rows)
    response, tail = infer_response(model, request, predict(model, request.matrix))
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    return (head + tail, len(head)) if tail else (head, None)


@router.post("/models/{name}/infer", summary="Inference")
@router.post("/models/{name}/versions/{version}/infer", summary="Inference with one model version")
async def infer(
    request: Request,
    _: AccessClaims = Depends(predict_scope),
    model: LoadedModel = Depends(model_from_path),
    settings: InferenceSettings = Depends(get_settings),
) -> Response:
    body = await read_body(request, settings.max_upload_bytes)
    content, header_length = await run_cpu(
        settings, len(body), infer_bytes, model, body, request.headers.get(HEADER_LENGTH), settings.max_batch_rows
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )
