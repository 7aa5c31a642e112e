"""The signing keys' kids in Postgres: which keys auth publishes, which one signs, which are gone.

Key files stay the source of truth (the launcher and the ``keys`` commands need no database);
this table is their durable record, kept in step by ``sync_forever`` from start on, so a
rotation made by dropping a file into KEYS_DIR is recorded within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .keyring import KeyRing, SigningKey
from .models import SigningKeyRecord

log = logging.getLogger(__name__)


async def record_keys(session: AsyncSession, keys: Sequence[SigningKey], signing_kid: str, now: datetime) -> None:
    """Upsert the published keys, stamp when the signing one started signing, retire the kids
    no longer published. Commits."""
    # Declarative types __table__ as any FromClause; a class mapped by __tablename__ gets a Table.
    table = cast(Table, SigningKeyRecord.__table__)
    for key in keys:
        signs = key.kid == signing_kid
        statement = insert(table).values(
            kid=key.kid,
            algorithm=key.algorithm,
            public_jwk=key.public_jwk,
            first_seen_at=now,
            last_seen_at=now,
            signing_since=now if signs else None,
            retired_at=None,
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.kid],
                set_={
                    "last_seen_at": now,
                    # A key put back into the folder is published again.
                    "retired_at": None,
                    "signing_since": func.coalesce(table.c.signing_since, now) if signs else table.c.signing_since,
                },
            )
        )
    await session.execute(
        update(SigningKeyRecord)
        .where(SigningKeyRecord.kid.not_in([key.kid for key in keys]), SigningKeyRecord.retired_at.is_(None))
        .values(retired_at=now)
    )
    await session.commit()


def _ring_state(ring: KeyRing) -> tuple[str, frozenset[str]]:
    return ring.signing.kid, frozenset(key.kid for key in ring.keys)


async def record_ring(ring: KeyRing, sessions: async_sessionmaker[AsyncSession]) -> tuple[str, frozenset[str]]:
    """Record the ring as it is now; returns what was recorded."""
    state = _ring_state(ring)
    async with sessions() as session:
        await record_keys(session, ring.keys, state[0], datetime.now(UTC))
    return state


async def sync_forever(ring: KeyRing, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
    """Record the keys at start and after every change of the folder; a database outage only delays it."""
    recorded: tuple[str, frozenset[str]] | None = None
    while True:
        ring.maybe_refresh()
        if _ring_state(ring) != recorded:
            try:
                recorded = await record_ring(ring, sessions)
            except (OSError, SQLAlchemyError) as exc:
                log.warning("could not record the signing keys in the database, will retry: %s", exc)
        await asyncio.sleep(interval)
