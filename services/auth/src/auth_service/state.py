"""``AuthState``: everything the lifespan builds once at start and closes at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from modelgate_shared.db import make_engine, ping
from modelgate_shared.health import Check
from modelgate_shared.keys import SUPPORTED_ALGORITHMS, KeyMaterialError
from modelgate_shared.proxies import Network
from modelgate_shared.tokens import TokenVerifier
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .grants import TokenPolicy
from .keyring import KeyRing, KeyRingSource, publish
from .passwords import PasswordHasher
from .revocation import Revocations
from .settings import AuthSettings


@dataclass
class AuthState:
    """Lives on ``app.state.auth``; routes reach it through ``deps``."""

    settings: AuthSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    ring: KeyRing
    hasher: PasswordHasher
    verifier: TokenVerifier
    policy: TokenPolicy
    revocations: Revocations
    trusted_proxies: tuple[Network, ...] = ()

    def current_ring(self) -> KeyRing:
        # Picks up `keys rotate` without a restart.
        self.ring.maybe_refresh()
        return self.ring

    def readiness_checks(self) -> dict[str, Check]:
        """What ``/readyz`` reports: Postgres answers, and a key is loaded to sign with."""
        return {"database": self._database_answers, "signing_key": self._signing_key_loaded}

    async def _database_answers(self) -> None:
        await ping(self.engine)

    async def _signing_key_loaded(self) -> None:
        if not self.current_ring().ready:
            raise KeyMaterialError("no signing key loaded")


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
        algorithms=SUPPORTED_ALGORITHMS,
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
        revocations=Revocations(settings.redis_url, settings.redis_key_prefix, settings.access_token_ttl_seconds),
        trusted_proxies=settings.trusted_proxy_networks(),
    )
