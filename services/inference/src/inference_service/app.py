"""``create_app``, and the lifespan that builds the service's ``InferenceState``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI
from modelgate_shared.health import Check, Degradable, health_router
from modelgate_shared.request_context import RequestIdMiddleware, configure_logging
from modelgate_shared.settings import load_settings

from . import __version__
from .errors import install_error_handlers
from .metrics import InferenceMetrics, install_metrics
from .model_repository import LoadFailure, ModelRepository
from .routes import manage, repository, v1, v2
from .settings import InferenceSettings
from .state import InferenceState, build_state

log = logging.getLogger(__name__)


async def watch_models(repository: ModelRepository, interval: float) -> None:
    """Reload the model directory every ``interval`` seconds, for as long as the app runs."""
    while True:
        await anyio.sleep(interval)
        try:
            if await anyio.to_thread.run_sync(repository.reload):
                log.info("model directory changed: now serving %s", repository.registry.names())
        except Exception:  # never let one bad scan stop the watching
            log.exception("reloading the model directory failed; retrying in %ss", interval)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or load_settings(InferenceSettings)
    configure_logging("inference", settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A bad model file must stop the start-up, naming the file, not fail on a request.
        metrics: InferenceMetrics = app.state.metrics

        def on_failure(failure: LoadFailure) -> None:
            metrics.model_load_failed(failure.name, failure.version)

        state = await anyio.to_thread.run_sync(build_state, settings, on_failure)
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
        # A bare task, not a task group: the lifespan may be entered and left in different tasks.
        watcher = asyncio.create_task(watch_models(state.repository, settings.model_poll_seconds))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="modelgate inference",
        summary="scikit-learn models over a JSON API and the Open Inference Protocol (V2)",
        version=__version__,
        lifespan=lifespan,
    )

    def readiness_checks() -> Mapping[str, Check | Degradable]:
        # Asked per /readyz request, by which time the lifespan has built the state.
        state: InferenceState = app.state.inference
        return state.readiness_checks()

    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(health_router(readiness_checks))
    app.include_router(v1.router)
    app.include_router(manage.router)
    app.include_router(v2.router)
    app.include_router(repository.router)
    install_metrics(app)
    return app
