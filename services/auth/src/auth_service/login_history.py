"""The login history: the row each ``/token`` attempt leaves, and a user's history read back."""

from __future__ import annotations

import ipaddress
import uuid

from fastapi import Request
from modelgate_shared.proxies import Network, forwarded_client, split_forwarded_for
from modelgate_shared.stored_text import storable
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Login, User


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


def login_attempt(request: Request, trusted_proxies: tuple[Network, ...], grant_type: str | None) -> Login:
    """The attempt's row before its outcome is known; client input is cut to the column sizes
    and cleaned of what Postgres cannot store. The username is not known yet: see ``settle``."""
    user_agent = request.headers.get("user-agent")
    return Login(
        client_ip=client_ip(request, trusted_proxies),
        user_agent=storable(user_agent[:512]) if user_agent else None,
        grant_type=storable(grant_type[:32]) if grant_type else None,
    )


async def settle(session: AsyncSession, login: Login, *, user_id: uuid.UUID | None, success: bool, reason: str) -> None:
    """Record the outcome. ``username`` is the account's own (normalised) name, and only when the
    attempt concerned an account: what was typed into the username field is never stored.

    OWASP's logging guidance: never record credentials. A failed login with an unknown name is
    often a password typed into the wrong field, and a hash of it would be guessable offline.
    Such attempts keep their time, client IP, user agent and reason ``unknown_user``.
    """
    login.user_id, login.success, login.reason = user_id, success, reason
    # From the session's identity map when the grant loaded the user, else one primary-key read.
    user = await session.get(User, user_id) if user_id is not None else None
    login.username = user.username if user is not None else None


async def page_of_logins(session: AsyncSession, user_id: uuid.UUID, limit: int, offset: int) -> tuple[list[Login], int]:
    total = await session.scalar(select(func.count()).select_from(Login).where(Login.user_id == user_id)) or 0
    rows = await session.scalars(
        select(Login)
        .where(Login.user_id == user_id)
        .order_by(Login.at.desc(), Login.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total
