"""The login history: the row each ``/token`` attempt leaves (a user's or a service account's),
the row of each account event (a username change), and a user's or a client's history read back."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime

from fastapi import Request
from modelgate_shared.proxies import Network, forwarded_client, split_forwarded_for
from modelgate_shared.stored_text import storable
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Login, User

# ``Login.event``: a /token attempt, or an account event.
TOKEN_ATTEMPT = "token"  # noqa: S105 - an event name, not a secret
USERNAME_CHANGED = "username_changed"
EVENTS = (TOKEN_ATTEMPT, USERNAME_CHANGED)


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


def _user_agent(request: Request) -> str | None:
    # Recorded, not validated: cut to the column and cleaned of what Postgres cannot store.
    user_agent = request.headers.get("user-agent")
    return storable(user_agent[:512]) if user_agent else None


def login_attempt(request: Request, trusted_proxies: tuple[Network, ...], grant_type: str | None) -> Login:
    """The attempt's row before its outcome is known; client input is cut to the column sizes
    and cleaned of what Postgres cannot store. The username is not known yet: see ``settle``."""
    return Login(
        event=TOKEN_ATTEMPT,
        client_ip=client_ip(request, trusted_proxies),
        user_agent=_user_agent(request),
        grant_type=storable(grant_type[:32]) if grant_type else None,
    )


def username_change(
    user: User,
    previous: str,
    now: datetime,
    by: str,
    request: Request | None = None,
    trusted_proxies: tuple[Network, ...] = (),
) -> Login:
    """The event row of a rename: the account's new and old names, who did it (``by``: ``user``,
    ``admin`` or ``cli``, the reason) and, through the API, from where (the client's address and
    user agent; an admin's rename records the admin's)."""
    return Login(
        event=USERNAME_CHANGED,
        user_id=user.id,
        username=user.username,
        previous_username=previous,
        at=now,
        client_ip=client_ip(request, trusted_proxies) if request is not None else None,
        user_agent=_user_agent(request) if request is not None else None,
        success=True,
        reason=by,
    )


async def settle(
    session: AsyncSession,
    login: Login,
    *,
    user_id: uuid.UUID | None,
    success: bool,
    reason: str,
    client_id: str | None = None,
) -> None:
    """Record the outcome. ``username`` is the account's own (normalised) name, and only when the
    attempt concerned an account: what was typed into the username field is never stored.
    ``client_id`` likewise: the service account's id when the attempt named one that exists.

    OWASP's logging guidance: never record credentials. A failed login with an unknown name is
    often a password typed into the wrong field, and a hash of it would be guessable offline.
    Such attempts keep their time, client IP, user agent and reason ``unknown_user``.
    """
    login.user_id, login.client_id, login.success, login.reason = user_id, client_id, success, reason
    # From the session's identity map when the grant loaded the user, else one primary-key read.
    user = await session.get(User, user_id) if user_id is not None else None
    login.username = user.username if user is not None else None


async def page_of_logins(
    session: AsyncSession, user_id: uuid.UUID | None, limit: int, offset: int, *, client_id: str | None = None
) -> tuple[list[Login], int]:
    """A user's history (``user_id``) or a service account's (``client_id``), newest first."""
    owner = Login.user_id == user_id if client_id is None else Login.client_id == client_id
    total = await session.scalar(select(func.count()).select_from(Login).where(owner)) or 0
    rows = await session.scalars(
        select(Login).where(owner).order_by(Login.at.desc(), Login.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total
