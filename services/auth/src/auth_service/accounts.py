"""User records: creation, lookup, listing, password and username changes, scopes, deletion, and
revoking a user's tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, literal, select, union_all, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .models import RefreshToken, User, UsernameReservation
from .passwords import PasswordHasher
from .revocation import note_subject_revoked
from .service_accounts import note_owned_clients_revoked


class UserConflict(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is already taken")
        self.field = field


async def find_conflict(
    session: AsyncSession,
    username: str | None,
    email: str | None,
    now: datetime,
    exclude: uuid.UUID | None = None,
) -> str | None:
    """The field ('username' or 'email') that is taken, if any: held by another user, or (a
    username) still reserved by another user's rename (``UsernameReservation``).

    One statement, so one snapshot: a rename away from ``username`` committing meanwhile is seen
    either not at all (the name is still that user's) or whole (the name is reserved), never
    half, with the name in neither place.
    """
    checks = []
    if username is not None:
        held = select(literal("username").label("field")).where(User.username == username)
        reserved = select(literal("username").label("field")).where(
            UsernameReservation.username == username, UsernameReservation.reserved_until > now
        )
        if exclude is not None:
            held = held.where(User.id != exclude)
            # A user may take back a name they gave up themselves.
            reserved = reserved.where(UsernameReservation.user_id != exclude)
        checks += [held, reserved]
    if email is not None:
        email_held = select(literal("email").label("field")).where(User.email == email)
        if exclude is not None:
            email_held = email_held.where(User.id != exclude)
        checks.append(email_held)
    if not checks:
        return None
    taken = set(await session.scalars(union_all(*checks)))
    return "username" if "username" in taken else next(iter(taken), None)


class UserGone(Exception):
    """The account was deleted while a change to it was under way."""

    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(f"no user with id {user_id}")


def conflict_from_integrity_error(exc: IntegrityError) -> UserConflict:
    # Two sign-ups or renames racing past find_conflict: the unique constraint decides, and
    # names the field (a username's: uq_users_username or pk_username_reservations).
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
    field = await find_conflict(session, username, email, datetime.now(UTC))
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


async def rename_user(
    session: AsyncSession, user: User, new_username: str, now: datetime, grace: timedelta
) -> str | None:
    """Give ``user`` the (normalised, valid) ``new_username``; its old name is reserved to it until
    ``now + grace``. Returns the old name; None when the name was the user's already (nothing
    changed). The caller records the event and commits. UserConflict when the name is taken or
    reserved by someone else, UserGone when the account was deleted meanwhile; the session must
    then be rolled back.

    The ``sub`` is the user's id, which never changes: sessions, rate limits and usage stay.
    """
    # Row lock, and the name as committed: two renames of one account serialise, and the second
    # reserves the name the first gave it.
    old = await session.scalar(select(User.username).where(User.id == user.id).with_for_update())
    if old is None:
        raise UserGone(user.id)
    if new_username == old:
        return None
    if await find_conflict(session, new_username, None, now, exclude=user.id):
        raise UserConflict("username")
    user.username = new_username
    try:
        # Two renames (or a sign-up) racing to the name past find_conflict: uq_users_username
        # decides, here rather than at the caller's commit.
        await session.flush()
    except IntegrityError as exc:
        raise conflict_from_integrity_error(exc) from None
    # Taking back a name of one's own ends its reservation; giving one up (again) starts one.
    await session.execute(
        delete(UsernameReservation).where(
            UsernameReservation.username == new_username, UsernameReservation.user_id == user.id
        )
    )
    until = now + grace
    await session.execute(
        insert(UsernameReservation)
        .values(username=old, user_id=user.id, released_at=now, reserved_until=until)
        .on_conflict_do_update(
            index_elements=[UsernameReservation.username],
            set_={"user_id": user.id, "released_at": now, "reserved_until": until},
        )
    )
    return old


def change_scopes(session: AsyncSession, user: User, scopes: Sequence[str]) -> None:
    """Set the user's scopes. A withdrawn scope also ends the access tokens that carry it (refreshed
    ones carry only what the user still has)."""
    if set(user.scopes) - set(scopes):
        note_subject_revoked(session, user.id)
    user.scopes = list(scopes)


async def delete_account(session: AsyncSession, user: User) -> None:
    """Delete the user; refresh tokens, login history and the service accounts they own go with it
    (ON DELETE CASCADE), and the access tokens of all of them are refused at the gateway once this
    commits."""
    note_subject_revoked(session, user.id)
    await note_owned_clients_revoked(session, user.id)
    await session.delete(user)


async def page_of_users(session: AsyncSession, limit: int, offset: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    users = await session.scalars(select(User).order_by(User.created_at, User.id).limit(limit).offset(offset))
    return list(users), total
