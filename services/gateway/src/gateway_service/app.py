"""The gateway ASGI app: ``uvicorn gateway_service.app:create_app --factory``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from modelgate_shared.error_bodies import InternalErrorMiddleware, install_error_handling
from modelgate_shared.health import health_router
from modelgate_shared.request_context import RequestIdMiddleware, configure_logging
from modelgate_shared.settings import load_settings
from starlette.types import Receive, Scope, Send

from .proxy import ProxyMiddleware
from .routes import admin, docs, metrics
from .settings import GatewaySettings
from .state import GatewayState


class GatewayApp(FastAPI):
    """FastAPI for the gateway's own endpoints, with the proxy in front of all of it.

    Proxied requests need none of FastAPI's per-request layers (telemetry check, error,
    body-limit and exception middleware, routing): the proxy answers every error itself
    and sets the request id. Only paths no route matches reach FastAPI.
    """

    proxy: ProxyMiddleware
    # The proxy behind the catch-all 500: an exception it does not answer itself is logged
    # without its message (modelgate_shared.error_bodies), never handed to the server.
    entry: InternalErrorMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.entry(scope, receive, send)

    async def serve_own(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, settings.log_json)
    # httpx logs every upstream call at INFO: noise, and a cost on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    state = GatewayState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = GatewayApp(
        title="modelgate",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /openapi.json are the merged platform spec (routes/docs.py), not FastAPI's own.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = state  # for deps.get_state
    app.state.verifier = state.verifier  # for modelgate_shared.bearer.require_scopes
    app.include_router(health_router(state.readiness_checks))
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(docs.router)
    app.add_middleware(RequestIdMiddleware)
    install_error_handling(app)
    app.proxy = ProxyMiddleware(app.serve_own, state=state)
    app.entry = InternalErrorMiddleware(app.proxy)
    return app
