"""The Open Inference Protocol's model repository extension: ``POST /v2/repository/index``,
``/v2/repository/models/{name}/load`` and ``/unload``.

Load and unload act on the model directory (an ``.unloaded`` marker), so every replica follows,
as with any other change there; this replica applies it before answering.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request, status
from modelgate_shared.scopes import ADMIN

from ..deps import AdminClaims, ModelName, ReadModelsClaims, State, may_list
from ..json_body import OrjsonResponse, parse_json, read_body
from ..model_store import set_unloaded
from ..state import InferenceState
from ..validation import InputError, Problem
from .manage import reload_models, require_model

router = APIRouter(prefix="/v2/repository", tags=["v2 model repository"])

READY, UNAVAILABLE = "READY", "UNAVAILABLE"


async def _ready_only(request: Request) -> bool:
    body = await read_body(request, 4096)
    if not body.strip():
        return False
    payload = parse_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("ready", False), bool):
        raise InputError([Problem(("body",), 'expected {} or {"ready": true|false}', "value_error")])
    return bool(payload.get("ready", False))


@router.post("/index", summary="Every model version and its state (only those this token may use)")
async def index(request: Request, claims: ReadModelsClaims, state: State) -> OrjsonResponse:
    ready_only = await _ready_only(request)
    repository = state.repository
    registry = repository.registry
    entries: list[dict[str, Any]] = [
        {"name": model.name, "version": model.version, "state": READY, "reason": ""}
        for model in registry.models()
        if may_list(registry, model, claims.scopes)
    ]
    if ADMIN in claims.scopes and not ready_only:
        # What is not served is an operator's business: only admins see it, and why.
        for name in sorted(repository.unloaded()):
            for version in sorted(repository.snapshot[name].versions):
                entries.append({"name": name, "version": version, "state": UNAVAILABLE, "reason": "unloaded"})
        for failure in repository.failures:
            entries.append(
                {"name": failure.name, "version": failure.version, "state": UNAVAILABLE, "reason": failure.error}
            )
    return OrjsonResponse(entries)


async def _set(state: InferenceState, name: str, unloaded: bool) -> None:
    require_model(state, name)
    await anyio.to_thread.run_sync(set_unloaded, state.settings.model_dir, name, unloaded)
    await reload_models(state.repository)


@router.post("/models/{name}/load", summary="Load (serve) a model on every replica")
async def load(_: AdminClaims, state: State, name: ModelName) -> dict[str, Any]:
    await _set(state, name, unloaded=False)
    if state.registry.get(name) is None:
        errors = "; ".join(f.error for f in state.repository.failures if f.name == name)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"model {name!r} failed to load: {errors or 'no versions'}")
    return {}


@router.post("/models/{name}/unload", summary="Unload (stop serving) a model on every replica")
async def unload(_: AdminClaims, state: State, name: ModelName) -> dict[str, Any]:
    await _set(state, name, unloaded=True)
    return {}
