"""``create_app``: settings, token verifier, models loaded once at start, routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from modelgate_shared.health import health_router
from modelgate_shared.request_context import RequestIdMiddleware, configure_logging
from modelgate_shared.settings import load_settings

from . import __version__, api_v1, api_v2
from .errors import install_error_handlers
from .model_store import load_registry
from .readiness import readiness_checks
from .settings import InferenceSettings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: InferenceSettings = app.state.settings
    # A bad model file must stop the start-up, naming the file, not fail on a request.
    app.state.registry = await anyio.to_thread.run_sync(load_registry, settings.model_dir)
    for name in app.state.registry.names():
        model = app.state.registry.get(name)
        log.info("serving model %s (default version %s) from %s", name, model.version, model.path)
    try:
        await app.state.verifier.keys.load()
    except Exception as exc:  # any failure: readiness reports it until keys appear
        log.warning("token keys not loaded yet (%s); /readyz answers 503 until they are", exc)
    yield


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or load_settings(InferenceSettings)
    configure_logging("inference", settings.log_level, settings.log_json)
    app = FastAPI(
        title="modelgate inference",
        summary="scikit-learn models over a JSON API and the Open Inference Protocol (V2)",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = settings.build_verifier()
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(health_router(lambda: readiness_checks(app)))
    app.include_router(api_v1.router)
    app.include_router(api_v2.router)
    return app
