"""FastAPI application factory for the auth service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from modelgate_shared.db import make_engine, ping
from modelgate_shared.health import health_router
from modelgate_shared.keys import KeyMaterialError
from modelgate_shared.request_context import RequestIdMiddleware, configure_logging
from modelgate_shared.settings import load_settings
from modelgate_shared.tokens import TokenVerifier
from sqlalchemy.ext.asyncio import async_sessionmaker

from .bootstrap import ensure_admin
from .deps import AuthState
from .grants import TokenPolicy
from .key_registry import sync_forever
from .keyring import KeyRing, KeyRingSource, publish
from .oauth_errors import OAuthError, hashing_busy_handler, oauth_error_handler
from .passwords import HashingBusy, PasswordHasher
from .routes import admin, token, users, wellknown
from .settings import SIGNING_ALGORITHMS, AuthSettings

log = logging.getLogger(__name__)

# How soon a key file dropped into KEYS_DIR (a rotation) is picked up and recorded in Postgres.
KEY_SYNC_INTERVAL_SECONDS = 2.0


def build_state(settings: AuthSettings) -> AuthState:
    ring = KeyRing(settings.keys_dir, settings.signing_kid, jwks_file=settings.public_jwks_file)
    ring.load()
    # Verifiers read this file: publish at every start, so it always matches the folder.
    publish(ring, settings.public_jwks_file)
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    verifier = TokenVerifier(
        KeyRingSource(ring),
        issuer=settings.issuer,
        audience=settings.audience,
        algorithms=frozenset(SIGNING_ALGORITHMS),
        leeway=settings.token_leeway_seconds,
    )
    return AuthState(
        settings=settings,
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ring=ring,
        hasher=PasswordHasher(
            settings.bcrypt_rounds, nice=settings.bcrypt_nice, max_pending=settings.bcrypt_max_pending
        ),
        verifier=verifier,
        policy=TokenPolicy(
            issuer=settings.issuer,
            audience=settings.audience,
            access_ttl_seconds=settings.access_token_ttl_seconds,
            refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
        ),
        trusted_proxies=settings.trusted_proxy_networks(),
    )


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
        key_sync = asyncio.create_task(
            sync_forever(state.ring, state.sessions, KEY_SYNC_INTERVAL_SECONDS), name="signing-keys"
        )
        try:
            async with state.sessions() as session:
                await ensure_admin(session, state.hasher, settings)
            yield
        finally:
            key_sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await key_sync
            state.hasher.close()
            await state.engine.dispose()

    app = FastAPI(
        title="modelgate auth",
        summary="OAuth2 authorization server: users, RS256 access tokens, rotating refresh tokens",
        version="0.1.0",
        lifespan=lifespan,
    )

    def checks() -> Mapping[str, Callable[[], Awaitable[object]]]:
        state: AuthState = app.state.auth

        async def signing_key() -> None:
            if not state.current_ring().ready:
                raise KeyMaterialError("no signing key loaded")

        return {"database": lambda: ping(state.engine), "signing_key": signing_key}

    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(OAuthError, oauth_error_handler)
    app.add_exception_handler(HashingBusy, hashing_busy_handler)
    app.include_router(health_router(checks))
    app.include_router(token.router)
    app.include_router(wellknown.router)
    app.include_router(users.router)
    app.include_router(admin.router)
    return app
