"""FastAPI dependencies: settings, the model registry, and the model a route names.

All ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in the
thread pool, and those round trips cost more than a one-row prediction (three per request
took inference from ~1.05 to ~1.3 ms of CPU per request).
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from .model_store import LoadedModel, ModelRegistry
from .settings import InferenceSettings


async def get_settings(request: Request) -> InferenceSettings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


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
    return find_model(request.app.state.registry, name, version)
