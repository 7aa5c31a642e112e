"""``create_app``, and the lifespan that builds the service's ``InferenceState``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from modelgate_shared.health import Check, health_router
from modelgate_shared.request_context import RequestIdMiddleware, configure_logging
from modelgate_shared.settings import load_settings

from . import __version__
from .errors import install_error_handlers
from .routes import v1, v2
from .settings import InferenceSettings
from .state import InferenceState, build_state

log = logging.getLogger(__name__)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or load_settings(InferenceSettings)
    configure_logging("inference", settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A bad model file must stop the start-up, naming the file, not fail on a request.
        state = await anyio.to_thread.run_sync(build_state, settings)
        app.state.inference = state
        # bearer.require_scopes reads the verifier from here.
        app.state.verifier = state.verifier
        for name in state.registry.names():
            model = state.registry.get(name)
            assert model is not None  # every listed name has a default version
            log.info("serving model %s (default version %s) from %s", name, model.version, model.path)
        try:
            await state.verifier.keys.load()
        except Exception as exc:  # any failure: readiness reports it until keys appear
            log.warning("token keys not loaded yet (%s); /readyz answers 503 until they are", exc)
        yield

    app = FastAPI(
        title="modelgate inference",
        summary="scikit-learn models over a JSON API and the Open Inference Protocol (V2)",
        version=__version__,
        lifespan=lifespan,
    )

    def readiness_checks() -> Mapping[str, Check]:
        # Asked per /readyz request, by which time the lifespan has built the state.
        state: InferenceState = app.state.inference
        return state.readiness_checks()

    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(health_router(readiness_checks))
    app.include_router(v1.router)
    app.include_router(v2.router)
    return app
