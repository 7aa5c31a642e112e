"""Publishing access-token revocations to the gateway's Redis (keys: ``modelgate_shared.revocation``).

Domain functions that end a user's or a session's tokens *note* it on the database session
(:func:`note_subject_revoked`, :func:`note_session_revoked`); the route publishes what was
noted once its transaction has committed (:meth:`Revocations.publish`). So a revocation
reaches the gateway only for a change that happened, and before the client gets its answer.

Publishing never fails the user's action. The change is in Postgres already, and auth's own
endpoints check it there (a deleted or disabled user, a password changed since ``iat``); when
Redis cannot be written (or ``MODELGATE_AUTH_REDIS_URL`` is unset) the gateway only learns
nothing, and the old access tokens keep working there until they expire: logged as a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from modelgate_shared.revocation import KEEP_LATEST_LUA, encode, key_ttl_ms, not_before, session_key, subject_key
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

# The revoking request waits for Redis this long at most: an outage must not stall it.
REDIS_TIMEOUT_SECONDS = 1.0
_SUBJECTS = "modelgate.revoked_subjects"
_SESSIONS = "modelgate.revoked_sessions"


def note_subject_revoked(session: AsyncSession, subject: uuid.UUID | str) -> None:
    """Every access token of ``subject`` (a user's id, a client's id) issued so far is to be
    refused once this commits."""
    session.info.setdefault(_SUBJECTS, set()).add(str(subject))


def note_session_revoked(session: AsyncSession, family_id: uuid.UUID) -> None:
    """Every access token of this session (``sid`` = refresh-token family) is to be refused."""
    session.info.setdefault(_SESSIONS, set()).add(str(family_id))


class Revocations:
    """Writes not-before times for the gateway; does nothing without a Redis URL."""

    def __init__(self, redis_url: str | None, key_prefix: str, access_ttl_seconds: int) -> None:
        self.enabled = redis_url is not None
        self._prefix = key_prefix
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
                "at the gateway until they expire: %s",
                len(subjects),
                len(sessions),
                exc,
            )
            return
        if subjects:
            await asyncio.sleep(max(0.0, nb - time.time()))

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
