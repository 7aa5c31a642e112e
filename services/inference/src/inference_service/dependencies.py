"""FastAPI dependencies: settings, the model registry, and the model a route names."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from .model_store import LoadedModel, ModelRegistry
from .settings import InferenceSettings


def get_settings(request: Request) -> InferenceSettings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
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


def model_from_path(request: Request, name: str, version: str | None = None) -> LoadedModel:
    """``version`` is a path segment on ``/versions/{version}`` routes, else an optional query parameter."""
    return find_model(get_registry(request), name, version)
