"""The login history: the row each ``/token`` attempt leaves, and a user's history read back."""

from __future__ import annotations

import ipaddress
import uuid

from fastapi import Request
from modelgate_shared.proxies import Network, forwarded_client, split_forwarded_for
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Login


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


def login_attempt(
    request: Request, trusted_proxies: tuple[Network, ...], grant_type: str | None, username: str | None
) -> Login:
    """The attempt's row before its outcome is known; client input is cut to the column sizes."""
    user_agent = request.headers.get("user-agent")
    return Login(
        username=username[:64] if username else None,
        client_ip=client_ip(request, trusted_proxies),
        user_agent=user_agent[:512] if user_agent else None,
        grant_type=grant_type,
    )


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
