"""FastAPI dependencies, each behind an ``Annotated`` alias: a route asks for ``model: PredictModel``.

All ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in the
thread pool, and those round trips cost more than a one-row prediction. For the same reason
each one reads ``InferenceState`` off the app itself instead of depending on ``get_state``.

Who may use a model: ``predict`` (or the model's own ``predict:<name>``) to predict, and
``models:read`` to read its metadata; a model or version that requires its own scope is
reached only with ``predict:<name>`` (see ``ModelRegistry.required_scope``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from modelgate_shared.bearer import VerifiedClaims, insufficient_scope, require_scopes
from modelgate_shared.scopes import ADMIN, MODEL_SCOPE_PREFIX, MODELS_READ, PREDICT, model_scope
from modelgate_shared.tokens import AccessClaims

from .model_repository import ModelRepository
from .model_store import NAME_PATTERN, LoadedModel, ModelRegistry
from .settings import InferenceSettings
from .state import InferenceState


async def get_state(request: Request) -> InferenceState:
    state: InferenceState = request.app.state.inference
    return state


State = Annotated[InferenceState, Depends(get_state)]


async def get_settings(request: Request) -> InferenceSettings:
    state: InferenceState = request.app.state.inference
    return state.settings


Settings = Annotated[InferenceSettings, Depends(get_settings)]


async def get_registry(request: Request) -> ModelRegistry:
    state: InferenceState = request.app.state.inference
    return state.registry


Registry = Annotated[ModelRegistry, Depends(get_registry)]


async def get_repository(request: Request) -> ModelRepository:
    state: InferenceState = request.app.state.inference
    return state.repository


Repository = Annotated[ModelRepository, Depends(get_repository)]


def find_model(registry: ModelRegistry, name: str, version: str | None, unloaded: Collection[str] = ()) -> LoadedModel:
    model = registry.get(name, version)
    if model is not None:
        return model
    if registry.get(name) is None:
        if name in unloaded:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} is unloaded (load it to serve it)")
        available = ", ".join(registry.names()) or "none"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model {name!r} (available: {available})")
    versions = ", ".join(registry.versions(name))
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} has no version {version!r} (versions: {versions})")


def may_predict(registry: ModelRegistry, model: LoadedModel, scopes: Collection[str]) -> bool:
    required = registry.required_scope(model)
    if required is not None:
        return required in scopes
    return PREDICT in scopes or MODEL_SCOPE_PREFIX + model.name in scopes


def may_read(registry: ModelRegistry, model: LoadedModel, scopes: Collection[str]) -> bool:
    """With ``models:read``: whether the caller may see this version at all."""
    required = registry.required_scope(model)
    return required is None or required in scopes


def may_list(registry: ModelRegistry, model: LoadedModel, scopes: Collection[str]) -> bool:
    """Listings show what the token may use: what it may predict with, or (for a token with
    no predict scope at all, such as a dashboard's) what it may read."""
    if not may_read(registry, model, scopes):
        return False
    if PREDICT in scopes or any(s.startswith(MODEL_SCOPE_PREFIX) for s in scopes):
        return may_predict(registry, model, scopes)
    return True


def _resolve(request: Request, name: str, version: str | None) -> tuple[ModelRegistry, LoadedModel]:
    state: InferenceState = request.app.state.inference
    registry = state.registry
    model = find_model(registry, name, version, state.repository.unloaded())
    # For the per-model metrics.
    request.state.model = model
    return registry, model


async def predict_model(request: Request, claims: VerifiedClaims, name: str, version: str | None = None) -> LoadedModel:
    """``version`` is a path segment on ``/versions/{version}`` routes (a version or an alias),
    else an optional query parameter."""
    if PREDICT not in claims.scopes and not any(s.startswith(MODEL_SCOPE_PREFIX) for s in claims.scopes):
        raise insufficient_scope(claims, (PREDICT,))
    registry, model = _resolve(request, name, version)
    if not may_predict(registry, model, claims.scopes):
        raise insufficient_scope(claims, (registry.required_scope(model) or PREDICT,))
    return model


async def read_model(request: Request, claims: VerifiedClaims, name: str, version: str | None = None) -> LoadedModel:
    if MODELS_READ not in claims.scopes:
        raise insufficient_scope(claims, (MODELS_READ,))
    registry, model = _resolve(request, name, version)
    if not may_read(registry, model, claims.scopes):
        raise insufficient_scope(claims, (MODELS_READ, model_scope(model.name)))
    return model


# The model (and version or alias) a route's path names, if the token may use it for that:
# 404 when there is no such model, 403 when the token lacks the scope.
PredictModel = Annotated[LoadedModel, Depends(predict_model)]
ReadModel = Annotated[LoadedModel, Depends(read_model)]

# A model name in a path: what the model directory can hold (else 422, before any lookup).
ModelName = Annotated[str, Path(pattern=NAME_PATTERN.pattern, description="model name")]

# A valid token carrying the scope a route needs.
ReadModelsClaims = Annotated[AccessClaims, Depends(require_scopes(MODELS_READ))]
AdminClaims = Annotated[AccessClaims, Depends(require_scopes(ADMIN))]
