"""Open Inference Protocol (KServe V2) REST endpoints. Errors are ``{"error": "..."}``
(see ``errors.py``); health endpoints are open, like any liveness probe."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from modelgate_shared.health import run_checks
from starlette.responses import JSONResponse, Response

from .. import __version__
from ..deps import PredictModel, ReadModel, Registry, Settings, State
from ..json_body import OrjsonResponse, read_body
from ..model_store import LoadedModel
from ..offload import run_cpu
from ..prediction import predict
from ..v2_protocol import infer_response, model_metadata, parse_infer_request, split_body

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
HEADER_LENGTH = "inference-header-content-length"


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "modelgate-inference", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server readiness (models loaded, token keys available)")
async def ready(state: State) -> JSONResponse:
    ok, _ = await run_checks(state.readiness_checks())
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}", summary="Model metadata")
@router.get("/models/{name}/versions/{version}", summary="Model version metadata")
async def metadata(model: ReadModel, registry: Registry) -> OrjsonResponse:
    return OrjsonResponse(model_metadata(model, registry.versions(model.name)))


@router.get("/models/{name}/ready", summary="Model readiness")
@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_ready(model: ReadModel) -> dict[str, Any]:
    # Models are loaded and checked at start, so one that exists is ready.
    return {"name": model.name, "version": model.version, "ready": True}


def infer_bytes(model: LoadedModel, body: bytes, header_length: str | None, max_rows: int) -> tuple[bytes, int | None]:
    payload, binary = split_body(body, header_length)
    request = parse_infer_request(payload, binary, model, max_rows)
    response, tail = infer_response(model, request, predict(model, request.data))
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    return (head + tail, len(head)) if tail else (head, None)


@router.post("/models/{name}/infer", summary="Inference")
@router.post("/models/{name}/versions/{version}/infer", summary="Inference with one model version")
async def infer(request: Request, model: PredictModel, settings: Settings) -> Response:
    body = await read_body(request, settings.max_upload_bytes)
    content, header_length = await run_cpu(
        settings, len(body), infer_bytes, model, body, request.headers.get(HEADER_LENGTH), settings.max_batch_rows
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )
