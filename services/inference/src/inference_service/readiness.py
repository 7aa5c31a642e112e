"""Readiness: models loaded and token keys available (shared by /readyz and /v2/health/ready)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from modelgate_shared.health import Check


def readiness_checks(app: FastAPI) -> Mapping[str, Check]:
    async def keys() -> None:
        verifier = app.state.verifier
        if not verifier.keys.ready:
            # Keys may appear after start (auth writes them); load them as soon as they do.
            await verifier.keys.load()

    async def models() -> None:
        if not getattr(app.state, "registry", None):
            raise RuntimeError("models not loaded")

    return {"keys": keys, "models": models}
