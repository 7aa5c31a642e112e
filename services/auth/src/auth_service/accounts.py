"""User records: creation, lookup, listing, password changes, scopes, deletion, and revoking a user's tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .models import RefreshToken, User
from .passwords import PasswordHasher
from .revocation import note_subject_revoked


class UserConflict(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is already taken")
        self.field = field


async def find_conflict(
    session: AsyncSession, username: str | None, email: str | None, exclude: uuid.UUID | None = None
) -> str | None:
    """The field ('username' or 'email') another user already holds, if any."""
    conditions = []
    if username is not None:
        conditions.append(User.username == username)
    if email is not None:
        conditions.append(User.email == email)
    if not conditions:
        return None
    query = select(User.username, User.email).where(or_(*conditions))
    if exclude is not None:
        query = query.where(User.id != exclude)
    for row in await session.execute(query):
        return "username" if username is not None and row.username == username else "email"
    return None


def conflict_from_integrity_error(exc: IntegrityError) -> UserConflict:
    # Two sign-ups racing past find_conflict: the unique constraint still names the field.
    text = str(exc.orig)
    return UserConflict("email" if "uq_users_email" in text else "username")


async def create_user(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    username: str,
    email: str,
    password: str,
    full_name: str | None,
    scopes: Sequence[str],
) -> User:
    """Insert a user (inputs already normalised and validated) and commit."""
    field = await find_conflict(session, username, email)
    if field:
        raise UserConflict(field)
    user = User(
        username=username,
        email=email,
        full_name=full_name,
        password_hash=await hasher.hash(password),
        scopes=list(scopes),
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict_from_integrity_error(exc) from None
    await session.refresh(user)
    return user


async def user_by_username(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID, reason: str, now: datetime) -> None:
    """Every session of the user ends: refresh tokens here, access tokens at the gateway once this commits."""
    note_subject_revoked(session, user_id)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def apply_password_change(
    session: AsyncSession, hasher: PasswordHasher, user: User, new_password: str, now: datetime
) -> None:
    user.password_hash = await hasher.hash(new_password)
    user.password_changed_at = now
    # A changed password ends every session: stolen refresh tokens die with the old password.
    await revoke_user_tokens(session, user.id, "password_changed", now)


def change_scopes(session: AsyncSession, user: User, scopes: Sequence[str]) -> None:
    """Set the user's scopes. A withdrawn scope also ends the access tokens that carry it (refreshed
    ones carry only what the user still has)."""
    if set(user.scopes) - set(scopes):
        note_subject_revoked(session, user.id)
    user.scopes = list(scopes)


async def delete_account(session: AsyncSession, user: User) -> None:
    """Delete the user; refresh tokens and login history go with it (ON DELETE CASCADE), and the
    access tokens are refused at the gateway once this commits."""
    note_subject_revoked(session, user.id)
    await session.delete(user)


async def page_of_users(session: AsyncSession, limit: int, offset: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    users = await session.scalars(select(User).order_by(User.created_at, User.id).limit(limit).offset(offset))
    return list(users), total
