"""GCRA rate limiting in one Redis script, and what to do when Redis cannot answer.

GCRA (the generic cell rate algorithm) keeps one number per bucket, the theoretical
arrival time (TAT). Compared with a sliding window it needs no sorted set per client,
costs O(1) memory and time, spreads requests evenly with an explicit burst, and gives an
exact Retry-After. The script (``gcra.lua``) checks every bucket of a request (for
example per-IP and per-username on the login route) and charges them only if all allow,
atomically, using Redis's clock: N gateway replicas sharing one Redis enforce one limit
exactly.

The same script first checks the token's revocation (``modelgate_shared.revocation``): auth
writes a not-before time per subject and per session, and a token issued before either is
refused, without charging any bucket. That costs no extra round trip; but while Redis is down
(failing open) revocation cannot be checked, and revoked tokens pass until they expire.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

from modelgate_shared.revocation import session_key, subject_key
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .identity import Identity
from .policies import Bucket, RatePolicy

log = logging.getLogger(__name__)

GCRA_LUA = files("gateway_service").joinpath("gcra.lua").read_text(encoding="utf-8")
# After a Redis failure, decisions skip Redis this long (then the next request tries again).
REDIS_RETRY_SECONDS = 1.0
# At most one "rate limiter unavailable" warning this often: an outage must not flood the log.
_WARNING_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # The tightest bucket's policy; None when no bucket was checked (rate limiting off, or revoked).
    policy: RatePolicy | None
    remaining: int
    reset_seconds: int
    retry_after_seconds: int
    # The token was revoked: answer 401, whatever the buckets say (they were not charged).
    revoked: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.policy is None:
            return []
        headers = [
            (b"ratelimit-limit", str(self.policy.burst).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
            (b"ratelimit-policy", self.policy.header().encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers


def revocation_check(key_prefix: str, identity: Identity | None) -> tuple[list[str], int]:
    """The not-before keys that can revoke this identity's token (its subject's, its session's),
    and the token's ``iat``; no keys for an anonymous request."""
    if identity is None or identity.sub is None or identity.issued_at is None:
        return [], 0
    keys = [subject_key(key_prefix, identity.sub)]
    if identity.session_id is not None:
        keys.append(session_key(key_prefix, identity.session_id))
    return keys, identity.issued_at


class RateLimiter:
    """Checks a token's revocation and all of a request's buckets in one Redis round trip."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        # register_script sends EVALSHA and loads the script only when Redis lacks it.
        self._script = redis.register_script(GCRA_LUA)
        self._key_prefix = key_prefix

    async def check(self, buckets: Sequence[Bucket], identity: Identity | None = None) -> Decision:
        revocation, issued_at = revocation_check(self._key_prefix, identity)
        args: list[int] = [len(revocation), issued_at]
        for bucket in buckets:
            args += [bucket.policy.interval_us, bucket.policy.burst]
        keys = [*revocation, *(b.key for b in buckets)]
        allowed, retry_us, tightest, remaining, reset_us, revoked = await self._script(keys=keys, args=args)
        return Decision(
            allowed=bool(allowed),
            policy=buckets[int(tightest) - 1].policy if int(tightest) > 0 else None,
            remaining=int(remaining),
            reset_seconds=math.ceil(int(reset_us) / 1_000_000),
            retry_after_seconds=max(1, math.ceil(int(retry_us) / 1_000_000)) if not allowed else 0,
            revoked=bool(revoked),
        )


class RateLimiterDown(Exception):
    """Redis cannot decide and the gateway is set to fail closed."""


class GuardedLimiter:
    """A :class:`RateLimiter` that a Redis outage cannot stall: it fails open or closed, as set.

    After a failure Redis is skipped for ``REDIS_RETRY_SECONDS``, so a dead one costs one
    failed call per second, not one per request. Every decision Redis could not make is
    counted in ``errors``.
    """

    def __init__(self, limiter: RateLimiter, *, fail_open: bool, errors: Counter) -> None:
        self._limiter = limiter
        self._fail_open = fail_open
        self._errors = errors
        self._down_until = 0.0
        self._last_warning = 0.0

    async def decide(self, buckets: Sequence[Bucket], identity: Identity | None = None) -> Decision | None:
        """The limiter's decision (``identity``: whose token's revocation to check, if any);
        ``None`` when Redis cannot answer and we fail open (revocation then goes unchecked).

        Raises :class:`RateLimiterDown` when Redis cannot answer and we fail closed.
        """
        now = time.monotonic()
        if now < self._down_until:
            self._unavailable(None)
            return None
        try:
            return await self._limiter.check(buckets, identity)
        except (RedisError, OSError) as exc:
            self._down_until = now + REDIS_RETRY_SECONDS
            self._unavailable(exc)
            return None

    def _unavailable(self, exc: Exception | None) -> None:
        self._errors.inc()
        if exc is not None:
            now = time.monotonic()
            if now - self._last_warning > _WARNING_INTERVAL_SECONDS:
                self._last_warning = now
                log.warning("rate limiter unavailable (failing %s): %s", "open" if self._fail_open else "closed", exc)
        if not self._fail_open:
            raise RateLimiterDown
