"""Access-token revocation through Redis: the one definition of its keys and values.

Access tokens are self-contained JWTs; nothing calls auth per request. To end them before
``exp`` (account deleted or disabled, password changed, session revoked), auth writes a
*not-before* time to Redis, and the gateway refuses a token whose ``iat`` is earlier, in the
same Lua script (so the same round trip) as its rate-limit decision (``gcra.lua``).

Two keys can apply to a token, both under the gateway's key prefix (``REDIS_KEY_PREFIX``,
``modelgate:gw:`` by default; auth and gateway must be set alike):

- ``<prefix>revoked:sub:<sub>``: every token of the subject (account-level events);
- ``<prefix>revoked:sid:<sid>``: every token of one session (``sid`` = the refresh-token
  family, one per login), so revoking a session leaves the user's other sessions alone.

The value is a decimal count of Unix seconds, ``N``: a token with ``iat < N`` is revoked
(:func:`is_revoked`, and the same comparison in ``gcra.lua``). ``iat`` has whole seconds, so
a revocation at time ``t`` writes ``floor(t) + 1``: every token issued up to ``t`` (its ``iat``
is at most ``floor(t)``) is refused, and so is one issued later in that same second. Auth
therefore answers a subject-wide revocation only once that second is over, so the caller's
next login gets a token that works. Both sides compare auth's clock with auth's clock (``iat``
and the not-before are both auth's): only auth replicas need to agree on the time.

A key lives for the access-token lifetime plus :data:`MAX_LEEWAY_SECONDS` (and a second):
after that, every token it refuses has expired anyway, for any verifier's leeway. Redis is
only a cache of them: auth keeps each one in Postgres for as long (:func:`lifetime_seconds`)
and writes them all again every few seconds, so a Redis that restarts empty heals. A write
keeps the later of the stored and the new time (:data:`KEEP_LATEST_LUA`), so two events
racing, or auth replicas with skewed clocks, never move a not-before back.

Redis Cluster: a script's keys must hash to one slot, and these keys share none with the rate-limit
buckets (``<prefix>id:user:<sub>``). Against a cluster, the key layout would need hash tags
(``{<sub>}``); modelgate runs against one Redis (or a primary with replicas).
"""

from __future__ import annotations

import math

DEFAULT_KEY_PREFIX = "modelgate:gw:"
# The largest token leeway any modelgate verifier accepts (their settings cap it).
MAX_LEEWAY_SECONDS = 300

# The two kinds of revocation, as named in the keys.
SUBJECT = "sub"
SESSION = "sid"
_SUBJECT = f"revoked:{SUBJECT}:"
_SESSION = f"revoked:{SESSION}:"

# KEYS: not-before keys. ARGV[1]: the new not-before (seconds), ARGV[2]: the keys' lifetime (ms).
# Each key keeps the later time, and the longer of its remaining life and ARGV[2].
KEEP_LATEST_LUA = """
local wanted = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '')
  local keep = math.max(ttl, redis.call('PTTL', KEYS[i]))
  if current == nil or current < wanted then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', keep)
  else
    redis.call('PEXPIRE', KEYS[i], keep)
  end
end
return #KEYS
"""


def subject_key(prefix: str, sub: str) -> str:
    """The not-before key of every token of ``sub``."""
    return f"{prefix}{_SUBJECT}{sub}"


def session_key(prefix: str, sid: str) -> str:
    """The not-before key of every token of the session ``sid``."""
    return f"{prefix}{_SESSION}{sid}"


def not_before(revoked_at: float) -> int:
    """The not-before to write for a revocation at ``revoked_at`` (Unix seconds, auth's clock)."""
    return math.floor(revoked_at) + 1


def encode(value: int) -> str:
    return str(int(value))


def decode(raw: bytes | str | None) -> int | None:
    """A stored not-before, or None when there is none (or it is not a number)."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def is_revoked(issued_at: int, *not_befores: int | None) -> bool:
    """The rule ``gcra.lua`` applies: a token issued before any of its not-befores is revoked."""
    return any(nb is not None and issued_at < nb for nb in not_befores)


def key_for(prefix: str, kind: str, target: str) -> str:
    """The key of a revocation of ``kind`` (:data:`SUBJECT` or :data:`SESSION`)."""
    return subject_key(prefix, target) if kind == SUBJECT else session_key(prefix, target)


def lifetime_seconds(access_ttl_seconds: int) -> int:
    """How long a not-before must be kept: until every token it refuses has expired."""
    return access_ttl_seconds + MAX_LEEWAY_SECONDS + 1


def key_ttl_ms(access_ttl_seconds: int) -> int:
    return lifetime_seconds(access_ttl_seconds) * 1000
