"""Service accounts (OAuth2 clients of the client_credentials grant): creation, secrets and their
rotation, checking a presented secret, scopes, disabling, deletion and listing.

Functions that change a client leave committing to the caller, which then publishes what was
noted for the gateway (``revocation.Revocations.publish``), as for users.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelgate_shared.oauth_params import SERVICE_ACCOUNT_ID_PREFIX
from modelgate_shared.stored_text import unstorable_character
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .issuing import hash_secret, new_secret
from .models import Client, User
from .revocation import note_subject_revoked

# The random part of a client id: 128 bits, so ids are unguessable too (they are not secret,
# but an id one cannot enumerate gives away nothing about which clients exist).
CLIENT_ID_BYTES = 16
MAX_CLIENT_ID_LENGTH = 64
# Compared against when no client has the presented id: the same work as a wrong secret.
_NO_SUCH_CLIENT_HASH = hash_secret(new_secret())


def new_client_id() -> str:
    return SERVICE_ACCOUNT_ID_PREFIX + secrets.token_urlsafe(CLIENT_ID_BYTES)


class OwnerNotFound(Exception):
    def __init__(self, owner_id: uuid.UUID) -> None:
        super().__init__(f"no user with id {owner_id} to own the client")


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A client and its new secret: the only time the secret exists outside the client."""

    client: Client
    secret: str


async def create_client(
    session: AsyncSession, *, name: str, owner_id: uuid.UUID, scopes: Sequence[str], now: datetime
) -> IssuedSecret:
    """Add a client (inputs validated); OwnerNotFound when ``owner_id`` names no user. The caller commits."""
    if await session.get(User, owner_id) is None:
        raise OwnerNotFound(owner_id)
    secret = new_secret()
    client = Client(
        id=new_client_id(),
        name=name,
        owner_id=owner_id,
        scopes=list(scopes),
        secret_hash=hash_secret(secret),
        disabled=False,
        created_at=now,
        secret_rotated_at=now,
    )
    session.add(client)
    return IssuedSecret(client, secret)


async def client_by_id(session: AsyncSession, client_id: str, *, for_update: bool = False) -> Client | None:
    # Client input: an id no client can have (too long, or a NUL Postgres cannot compare) is unknown.
    if len(client_id) > MAX_CLIENT_ID_LENGTH or unstorable_character(client_id):
        return None
    query = select(Client).where(Client.id == client_id)
    return await session.scalar(query.with_for_update() if for_update else query)


def previous_secret_valid(client: Client, now: datetime) -> bool:
    return (
        client.previous_secret_hash is not None
        and client.previous_secret_expires_at is not None
        and client.previous_secret_expires_at > now
    )


def secret_matches(client: Client | None, secret: str, now: datetime) -> bool:
    """Whether ``secret`` is the client's, or its previous one within the rotation grace period.

    Digests compared in constant time; an unknown client costs the same comparisons as a wrong
    secret. Microseconds of CPU: safe on the event loop.
    """
    presented = hash_secret(secret)
    if client is None:
        hmac.compare_digest(presented, _NO_SUCH_CLIENT_HASH)
        return False
    current = hmac.compare_digest(presented, client.secret_hash)
    previous = hmac.compare_digest(presented, client.previous_secret_hash or _NO_SUCH_CLIENT_HASH)
    return current or (previous and previous_secret_valid(client, now))


def rotate_secret(client: Client, now: datetime, grace: timedelta) -> IssuedSecret:
    """Give the client a new secret; the current one stays valid until ``now + grace`` (none when
    ``grace`` is zero). A secret still in an earlier grace period stops now: one previous secret at
    most. Tokens already issued are untouched (disable the client to end them)."""
    secret = new_secret()
    if grace > timedelta(0):
        client.previous_secret_hash = client.secret_hash
        client.previous_secret_expires_at = now + grace
    else:
        client.previous_secret_hash = None
        client.previous_secret_expires_at = None
    client.secret_hash = hash_secret(secret)
    client.secret_rotated_at = now
    return IssuedSecret(client, secret)


def set_disabled(session: AsyncSession, client: Client, disabled: bool) -> None:
    """Disable (its tokens are refused at the gateway once this commits) or enable the client."""
    if disabled and not client.disabled:
        note_subject_revoked(session, client.id)
    client.disabled = disabled


def change_client_scopes(session: AsyncSession, client: Client, scopes: Sequence[str]) -> None:
    """Set the client's scopes; withdrawing one also ends the tokens that carry it."""
    if set(client.scopes) - set(scopes):
        note_subject_revoked(session, client.id)
    client.scopes = list(scopes)


async def delete_client(session: AsyncSession, client: Client) -> None:
    """Delete the client (its login history goes with it); its tokens are refused once this commits."""
    note_subject_revoked(session, client.id)
    await session.delete(client)


async def note_owned_clients_revoked(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Before deleting a user: their clients go too (ON DELETE CASCADE), so their tokens must end."""
    for client_id in await session.scalars(select(Client.id).where(Client.owner_id == owner_id)):
        note_subject_revoked(session, client_id)


async def page_of_clients(
    session: AsyncSession, limit: int, offset: int, owner_id: uuid.UUID | None = None
) -> tuple[list[Client], int]:
    count = select(func.count()).select_from(Client)
    query = select(Client).order_by(Client.created_at, Client.id).limit(limit).offset(offset)
    if owner_id is not None:
        count, query = count.where(Client.owner_id == owner_id), query.where(Client.owner_id == owner_id)
    total = await session.scalar(count) or 0
    return list(await session.scalars(query)), total
