"""Access-token revocations: kept in Postgres, published to the gateway's Redis (keys:
``modelgate_shared.revocation``).

Domain functions that end a user's or a session's tokens *note* it on the database session
(:func:`note_subject_revoked`, :func:`note_session_revoked`). At commit the notes become rows
of ``revocations`` in that same transaction (:func:`_store_noted`), so a revocation is durable
exactly when its change is. The route then publishes what was noted once the commit is done
(:meth:`Revocations.publish`): the gateway refuses the tokens before the client gets its answer.

Redis is only a cache of the table: :func:`republish_forever` writes every revocation still in
force again every ``MODELGATE_AUTH_REVOCATION_REPUBLISH_SECONDS`` (each key keeps the later
not-before, so several auth replicas doing it agree), and deletes the rows nobody needs any
more. A Redis that restarted empty, or was unreachable when a change was made, is whole again
within that interval.

Publishing never fails the user's action. The change is in Postgres already, and auth's own
endpoints check it there (a deleted or disabled user, a password changed since ``iat``); when
Redis cannot be written the old access tokens keep working at the gateway until Redis is back
and the next republish (logged as a warning), and without ``MODELGATE_AUTH_REDIS_URL`` until
they expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from modelgate_shared.revocation import (
    KEEP_LATEST_LUA,
    SESSION,
    SUBJECT,
    encode,
    key_for,
    key_ttl_ms,
    lifetime_seconds,
    not_before,
    session_key,
    subject_key,
)
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy import CursorResult, delete, event, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from .models import RevocationRecord

log = logging.getLogger(__name__)

# The revoking request waits for Redis this long at most: an outage must not stall it.
REDIS_TIMEOUT_SECONDS = 1.0
_SUBJECTS = "modelgate.revoked_subjects"
_SESSIONS = "modelgate.revoked_sessions"
# Rows written to Redis per round trip when republishing.
REPUBLISH_BATCH = 500


def note_subject_revoked(session: AsyncSession, subject: uuid.UUID | str) -> None:
    """Every access token of ``subject`` (a user's id, a client's id) issued so far is to be
    refused once this commits."""
    session.info.setdefault(_SUBJECTS, set()).add(str(subject))
    _store_at_commit(session)


def note_session_revoked(session: AsyncSession, family_id: uuid.UUID) -> None:
    """Every access token of this session (``sid`` = refresh-token family) is to be refused."""
    session.info.setdefault(_SESSIONS, set()).add(str(family_id))
    _store_at_commit(session)


def _store_at_commit(session: AsyncSession) -> None:
    sync = session.sync_session
    if not event.contains(sync, "before_commit", _store_noted):
        event.listen(sync, "before_commit", _store_noted)


def _store_noted(session: Session) -> None:
    """``before_commit``: the noted revocations become rows of the transaction being committed,
    so none is lost however Redis fares, and none is kept for a change that rolled back.

    The not-before is taken now, just before the final flush and COMMIT; the one published
    after the commit may be a second later, and a key keeps the later of the two. Writing twice
    (a session committing again with the notes still on it) only keeps the later time.
    """
    subjects: set[str] = session.info.get(_SUBJECTS, set())
    sessions: set[str] = session.info.get(_SESSIONS, set())
    if not (subjects or sessions):
        return
    nb = not_before(time.time())
    rows = [{"kind": SUBJECT, "target": s, "not_before": nb} for s in sorted(subjects)]
    rows += [{"kind": SESSION, "target": s, "not_before": nb} for s in sorted(sessions)]
    statement = insert(RevocationRecord).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[RevocationRecord.kind, RevocationRecord.target],
        set_={"not_before": func.greatest(RevocationRecord.not_before, statement.excluded.not_before)},
    )
    session.execute(statement)


async def in_force(session: AsyncSession, now: float, access_ttl_seconds: int) -> list[tuple[str, str, int]]:
    """(kind, target, not-before) of every revocation some unexpired token may still need."""
    oldest = math.floor(now) - lifetime_seconds(access_ttl_seconds)
    result = await session.execute(
        select(RevocationRecord.kind, RevocationRecord.target, RevocationRecord.not_before).where(
            RevocationRecord.not_before > oldest
        )
    )
    return [(kind, target, nb) for kind, target, nb in result]


async def prune_revocations(session: AsyncSession, now: float, access_ttl_seconds: int) -> int:
    """Delete the revocations every token of which has expired (does not commit); how many."""
    oldest = math.floor(now) - lifetime_seconds(access_ttl_seconds)
    deleted = cast(
        CursorResult[Any], await session.execute(delete(RevocationRecord).where(RevocationRecord.not_before <= oldest))
    )
    return deleted.rowcount or 0


class Revocations:
    """Writes not-before times for the gateway; does nothing without a Redis URL."""

    def __init__(self, redis_url: str | None, key_prefix: str, access_ttl_seconds: int) -> None:
        self.enabled = redis_url is not None
        self._prefix = key_prefix
        self.access_ttl_seconds = access_ttl_seconds
        self._ttl_ms = key_ttl_ms(access_ttl_seconds)
        self._redis: Redis | None = None
        if redis_url is not None:
            # No retries: one attempt, bounded by the timeout, then a warning.
            self._redis = Redis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 0),
            )
            self._script = self._redis.register_script(KEEP_LATEST_LUA)

    async def publish(self, session: AsyncSession) -> None:
        """Publish what was noted on ``session`` (call after its commit); clears the notes.

        After a subject-wide revocation this returns only once the not-before second has begun
        (at most a second later): ``iat`` has whole seconds, so a token issued earlier in the
        second of the revocation is refused too, and the caller's next login (after a password
        change, say) must get a token issued after it. Session revocations need no wait: a
        revoked session issues no more tokens.
        """
        subjects: set[str] = session.info.pop(_SUBJECTS, set())
        sessions: set[str] = session.info.pop(_SESSIONS, set())
        if not (subjects or sessions) or self._redis is None:
            return
        nb = not_before(time.time())
        keys = [subject_key(self._prefix, s) for s in sorted(subjects)]
        keys += [session_key(self._prefix, s) for s in sorted(sessions)]
        try:
            # One script call for all of them; each key keeps the later not-before.
            await self._script(keys=keys, args=[encode(nb), self._ttl_ms])
        except (RedisError, OSError) as exc:
            log.warning(
                "revocation not published (%d subject(s), %d session(s)); their access tokens stay valid "
                "at the gateway until Redis is back and the revocations are republished: %s",
                len(subjects),
                len(sessions),
                exc,
            )
        # Even when Redis failed: the stored not-before will be republished, and must not
        # refuse the caller's next token either.
        if subjects:
            await asyncio.sleep(max(0.0, nb - time.time()))

    async def republish(self, revocations: Sequence[tuple[str, str, int]], now: float) -> None:
        """Write ``revocations`` (from :func:`in_force`) to Redis, each kept as long as it is
        needed. Idempotent: a key keeps the later of its not-before and the one written.
        Raises what Redis raises."""
        if self._redis is None:
            return
        lifetime = lifetime_seconds(self.access_ttl_seconds)
        for start in range(0, len(revocations), REPUBLISH_BATCH):
            async with self._redis.pipeline(transaction=False) as pipe:
                for kind, target, nb in revocations[start : start + REPUBLISH_BATCH]:
                    remaining_ms = max(1, math.ceil((nb + lifetime - now) * 1000))
                    await self._script(
                        keys=[key_for(self._prefix, kind, target)], args=[encode(nb), remaining_ms], client=pipe
                    )
                await pipe.execute()

    async def check(self) -> None:
        """At start: say when revocations cannot reach the gateway (never fatal)."""
        if self._redis is None:
            log.warning(
                "MODELGATE_AUTH_REDIS_URL is not set: revocations are not published, so at the gateway an "
                "access token stays valid until it expires even after its user is deleted, disabled, "
                "changes password or revokes the session"
            )
            return
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            log.warning("Redis for revocations unreachable at start (will try at each revocation): %s", exc)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


async def republish_once(revocations: Revocations, sessions: async_sessionmaker[AsyncSession]) -> int:
    """Prune the revocations no longer needed, then write the others to Redis; how many were written."""
    now = time.time()
    async with sessions() as session:
        await prune_revocations(session, now, revocations.access_ttl_seconds)
        await session.commit()
        rows = await in_force(session, now, revocations.access_ttl_seconds)
    await revocations.republish(rows, now)
    return len(rows)


async def republish_forever(
    revocations: Revocations, sessions: async_sessionmaker[AsyncSession], interval: float
) -> None:
    """Heal the gateway's Redis every ``interval`` seconds; an outage of either store only delays it."""
    failing = False
    while True:
        try:
            await republish_once(revocations, sessions)
        except (RedisError, OSError, SQLAlchemyError) as exc:
            # Once per outage, not once per round.
            if not failing:
                log.warning("could not republish the revocations, will retry every %gs: %s", interval, exc)
            failing = True
        else:
            if failing:
                log.info("revocations republished again")
            failing = False
        await asyncio.sleep(interval)
