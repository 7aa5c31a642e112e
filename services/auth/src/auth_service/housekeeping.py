"""Deleting rows nobody can use any more: expired refresh tokens, old login history, username
reservations past their grace period."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Login, RefreshToken, UsernameReservation


async def prune(session: AsyncSession, now: datetime, login_retention: timedelta) -> tuple[int, int, int]:
    """(refresh tokens deleted, logins deleted, expired username reservations deleted). Commits."""
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
    await session.commit()
    return tokens.rowcount or 0, logins.rowcount or 0, reservations.rowcount or 0
