"""FastAPI dependencies, each behind an ``Annotated`` alias: a route asks for ``model: Model``.

All ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in the
thread pool, and those round trips cost more than a one-row prediction (three per request
took inference from ~1.05 to ~1.3 ms of CPU per request). For the same reason each one reads
``InferenceState`` off the app itself instead of depending on ``get_state``: a prediction
resolves only the dependencies its route names.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from modelgate_shared.bearer import require_scopes
from modelgate_shared.tokens import AccessClaims

from .model_store import LoadedModel, ModelRegistry
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


def find_model(registry: ModelRegistry, name: str, version: str | None) -> LoadedModel:
    model = registry.get(name, version)
    if model is not None:
        return model
    if registry.get(name) is None:
        available = ", ".join(registry.names()) or "none"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model {name!r} (available: {available})")
    versions = ", ".join(registry.versions(name))
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} has no version {version!r} (versions: {versions})")


async def model_from_path(request: Request, name: str, version: str | None = None) -> LoadedModel:
    """``version`` is a path segment on ``/versions/{version}`` routes, else an optional query parameter."""
    state: InferenceState = request.app.state.inference
    return find_model(state.registry, name, version)


# The model (and version) a route's path names; 404 when there is no such model.
Model = Annotated[LoadedModel, Depends(model_from_path)]

# A valid token carrying the scope a route needs.
ReadModelsClaims = Annotated[AccessClaims, Depends(require_scopes("models:read"))]
PredictClaims = Annotated[AccessClaims, Depends(require_scopes("predict"))]
