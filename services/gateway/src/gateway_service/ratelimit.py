"""GCRA rate limiting in one Redis script.

GCRA (the generic cell rate algorithm) keeps one number per bucket, the theoretical
arrival time (TAT). Compared with a sliding window it needs no sorted set per client,
costs O(1) memory and time, spreads requests evenly with an explicit burst, and gives an
exact Retry-After. The script checks every bucket of a request (for example per-IP and
per-username on the login route) and charges them only if all allow, atomically, using
Redis's clock: N gateway replicas sharing one Redis enforce one limit exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from .policies import Bucket, RatePolicy

# KEYS: bucket keys. ARGV: (interval_us, burst) per key.
# Returns {allowed, retry_after_us, index of the tightest bucket (1-based), remaining, reset_us}.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local allowed = 1
local retry = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local allow_at = tat + interval - burst * interval
  if now < allow_at then
    allowed = 0
    if allow_at - now > retry then retry = allow_at - now end
  end
end
local tightest = 1
local least = nil
local least_reset = 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + interval
    -- %d: Lua's default number format keeps only 14 digits of a microsecond clock.
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((now - (tat - burst * interval)) / interval)
  if remaining < 0 then remaining = 0 end
  if least == nil or remaining < least then
    least = remaining
    tightest = i
    least_reset = tat - now
  end
end
return {allowed, retry, tightest, least, least_reset}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: RatePolicy
    remaining: int
    reset_seconds: int
    retry_after_seconds: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"ratelimit-limit", str(self.policy.burst).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
            (b"ratelimit-policy", self.policy.header().encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        # register_script sends EVALSHA and loads the script only when Redis lacks it.
        self._script = redis.register_script(GCRA_LUA)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def check(self, buckets: Sequence[Bucket]) -> Decision:
        args: list[int] = []
        for bucket in buckets:
            args += [bucket.policy.interval_us, bucket.policy.burst]
        allowed, retry_us, tightest, remaining, reset_us = await self._script(keys=[b.key for b in buckets], args=args)
        return Decision(
            allowed=bool(allowed),
            policy=buckets[int(tightest) - 1].policy,
            remaining=int(remaining),
            reset_seconds=math.ceil(int(reset_us) / 1_000_000),
            retry_after_seconds=max(1, math.ceil(int(retry_us) / 1_000_000)) if not allowed else 0,
        )
