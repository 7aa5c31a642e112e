"""Deleting rows nobody can use any more: expired refresh tokens, old login history, username
reservations past their grace period, revocations whose tokens have all expired."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Login, RefreshToken, UsernameReservation
from .revocation import prune_revocations


async def prune(
    session: AsyncSession, now: datetime, login_retention: timedelta, access_ttl_seconds: int
) -> tuple[int, int, int, int]:
    """(refresh tokens deleted, logins deleted, expired username reservations deleted, revocations
    deleted). Commits. The running service prunes revocations by itself too (revocation.republish_forever)."""
    # An expired token is refused whatever its state, so its row only costs space
    # (replaced_by links to it are set to NULL by the foreign key).
    # Session.execute is typed as returning a plain Result; a DELETE's is a CursorResult, which has the rowcount.
    tokens = cast(CursorResult[Any], await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now)))
    logins = cast(CursorResult[Any], await session.execute(delete(Login).where(Login.at < now - login_retention)))
    # A reservation past its grace reserves nothing (accounts.find_conflict).
    reservations = cast(
        CursorResult[Any],
        await session.execute(delete(UsernameReservation).where(UsernameReservation.reserved_until <= now)),
    )
    revocations = await prune_revocations(session, now.timestamp(), access_ttl_seconds)
    await session.commit()
    return tokens.rowcount or 0, logins.rowcount or 0, reservations.rowcount or 0, revocations
