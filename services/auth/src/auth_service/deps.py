"""FastAPI dependencies: settings, DB session, keys, hasher, and the current user."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from modelgate_shared.bearer import require_scopes, unauthorized
from modelgate_shared.proxies import Network, forwarded_client, split_forwarded_for
from modelgate_shared.tokens import AccessClaims, TokenVerifier
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .grants import TokenPolicy
from .keyring import KeyRing
from .models import User
from .passwords import PasswordHasher
from .settings import AuthSettings


@dataclass
class AuthState:
    """Everything built once at start; lives on ``app.state.auth``."""

    settings: AuthSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    ring: KeyRing
    hasher: PasswordHasher
    verifier: TokenVerifier
    policy: TokenPolicy
    trusted_proxies: tuple[Network, ...] = ()

    def current_ring(self) -> KeyRing:
        # Picks up `keys rotate` without a restart.
        self.ring.maybe_refresh()
        return self.ring


async def get_state(request: Request) -> AuthState:
    # async: a plain def dependency costs a worker-thread round trip per request.
    return request.app.state.auth


def get_ring(state: AuthState = Depends(get_state)) -> KeyRing:
    return state.current_ring()


async def get_session(state: AuthState = Depends(get_state)) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


def _parse_ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value) if value else None
    except ValueError:
        return None


def client_ip(request: Request, trusted_proxies: tuple[Network, ...]) -> str | None:
    """The client's address (``modelgate_shared.proxies.forwarded_client``); None when the
    forwarded hop is not an address, so the login history never records a guess."""
    peer = request.client.host if request.client else None
    if peer is None:
        return None
    chain = split_forwarded_for(request.headers.getlist("x-forwarded-for"))
    ip = _parse_ip(forwarded_client(peer, chain, trusted_proxies))
    return str(ip) if ip is not None else None


async def current_user(
    claims: AccessClaims = Depends(require_scopes()),
    session: AsyncSession = Depends(get_session),
) -> User:
    try:
        user_id = uuid.UUID(claims.sub)
    except ValueError:
        raise unauthorized("token subject is not a user id") from None
    user = await session.get(User, user_id)
    if user is None:
        raise unauthorized("user no longer exists")
    if user.disabled:
        raise unauthorized("user is disabled")
    if claims.issued_at < int(user.password_changed_at.timestamp()):
        # The password changed after this token was issued; make the holder log in again.
        raise unauthorized("token predates a password change")
    return user


async def current_admin(
    claims: AccessClaims = Depends(require_scopes("admin")),
    user: User = Depends(current_user),
) -> User:
    # The token's scope is not enough: the admin right may have been withdrawn since it was issued.
    if "admin" not in user.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="user no longer has the admin scope")
    return user
