"""FastAPI application factory for the auth service, and the lifespan that owns its ``AuthState``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from modelgate_shared.error_bodies import install_error_handling
from modelgate_shared.health import Check, health_router
from modelgate_shared.keys import KeyMaterialError
from modelgate_shared.request_context import RequestIdMiddleware, configure_logging
from modelgate_shared.settings import load_settings

from .bootstrap import ensure_admin
from .key_registry import sync_forever
from .oauth_errors import OAuthError, hashing_busy_handler, oauth_error_handler
from .passwords import HashingBusy
from .revocation import republish_forever
from .routes import admin, clients, token, users, wellknown
from .settings import AuthSettings
from .state import AuthState, build_state

log = logging.getLogger(__name__)

# How soon a key file dropped into KEYS_DIR (a rotation) is picked up and recorded in Postgres.
KEY_SYNC_INTERVAL_SECONDS = 2.0


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or load_settings(AuthSettings)
    configure_logging("auth", settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            # Key parsing and the dummy bcrypt hash are CPU work: off the loop.
            state = await anyio.to_thread.run_sync(build_state, settings)
        except KeyMaterialError as exc:
            log.error("cannot start: %s", exc)
            raise
        app.state.auth = state
        # bearer.require_scopes reads the verifier from here.
        app.state.verifier = state.verifier
        log.info("signing with kid %s (%d key(s) published)", state.ring.signing.kid, len(state.ring.keys))
        tasks = [
            asyncio.create_task(
                sync_forever(state.ring, state.sessions, KEY_SYNC_INTERVAL_SECONDS), name="signing-keys"
            )
        ]
        if state.revocations.enabled:
            tasks.append(
                asyncio.create_task(
                    republish_forever(state.revocations, state.sessions, settings.revocation_republish_seconds),
                    name="revocations",
                )
            )
        try:
            await state.revocations.check()
            async with state.sessions() as session:
                await ensure_admin(session, state.hasher, settings)
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.hasher.close()
            await state.revocations.aclose()
            await state.engine.dispose()

    app = FastAPI(
        title="modelgate auth",
        summary="OAuth2 authorization server: users, service accounts, RS256 access tokens, rotating refresh tokens",
        version="0.1.0",
        lifespan=lifespan,
    )

    def readiness_checks() -> Mapping[str, Check]:
        # Asked per /readyz request, by which time the lifespan has built the state.
        state: AuthState = app.state.auth
        return state.readiness_checks()

    app.add_middleware(RequestIdMiddleware)
    install_error_handling(app)
    app.add_exception_handler(OAuthError, oauth_error_handler)
    app.add_exception_handler(HashingBusy, hashing_busy_handler)
    app.include_router(health_router(readiness_checks))
    app.include_router(token.router)
    app.include_router(wellknown.router)
    app.include_router(users.router)
    app.include_router(admin.router)
    app.include_router(clients.router)
    return app
