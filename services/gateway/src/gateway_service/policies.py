"""Rate-limit policies: parsing them, and the buckets they put a request in (pure functions)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

_PERIODS = {"second": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0, "hour": 3600.0, "h": 3600.0}
_PERIODS["day"] = _PERIODS["d"] = 86400.0
_POLICY = re.compile(r"^\s*(\d+)\s*/\s*([0-9.]*)\s*([a-z]*)\s*(?::\s*(\d+))?\s*$")


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """``limit`` requests per ``period`` seconds, at most ``burst`` of them back to back (GCRA)."""

    name: str
    limit: int
    period: float
    burst: int

    @property
    def interval_us(self) -> int:
        """GCRA emission interval: the steady spacing between requests, in microseconds."""
        return max(1, round(self.period * 1_000_000 / self.limit))

    def header(self) -> str:
        return f"{self.limit};w={self.period:g};burst={self.burst}"


def parse_policy(text: str, name: str) -> RatePolicy:
    """``"600/minute"``, ``"600/60"``, ``"10/5min:3"``; burst defaults to the limit."""
    match = _POLICY.match(text.lower())
    if not match:
        raise ValueError(f"{name}: {text!r} is not LIMIT/PERIOD[:BURST], e.g. '600/minute:100'")
    limit, amount, unit, burst = match.groups()
    if unit and unit not in _PERIODS:
        raise ValueError(f"{name}: unknown period unit {unit!r} (use second, minute, hour or day)")
    if not amount and not unit:
        raise ValueError(f"{name}: {text!r} has no period")
    period = (float(amount) if amount else 1.0) * (_PERIODS[unit] if unit else 1.0)
    if int(limit) < 1 or period <= 0:
        raise ValueError(f"{name}: limit and period must be positive in {text!r}")
    burst_value = int(burst) if burst else int(limit)
    if burst_value < 1:
        raise ValueError(f"{name}: burst must be at least 1 in {text!r}")
    return RatePolicy(name=name, limit=int(limit), period=period, burst=burst_value)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One policy applied to one identity: a Redis key."""

    key: str
    policy: RatePolicy


def identity_policy(
    default: RatePolicy,
    overrides: Mapping[str, RatePolicy],
    sub: str | None,
    scopes: frozenset[str],
) -> RatePolicy:
    """A per-user override wins, then the most generous matching per-scope one, then the default."""
    if sub is not None and (user := overrides.get(f"user:{sub}")) is not None:
        return user
    matching = [p for s in scopes if (p := overrides.get(f"scope:{s}")) is not None]
    if matching:
        return max(matching, key=lambda p: (p.limit / p.period, p.burst))
    return default


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The configured policies, and the Redis key prefix their buckets live under."""

    key_prefix: str
    default: RatePolicy
    login_ip: RatePolicy
    login_username: RatePolicy
    overrides: Mapping[str, RatePolicy]
    # The gateway's own endpoints (everything no route matches): one policy, no overrides.
    own: RatePolicy


def identity_buckets(policies: PolicySet, sub: str | None, scopes: frozenset[str], ip: str) -> list[Bucket]:
    """A verified user is limited per ``sub`` (overrides apply), anyone else per client IP."""
    if sub is not None:
        policy = identity_policy(policies.default, policies.overrides, sub, scopes)
        return [Bucket(f"{policies.key_prefix}id:user:{sub}", policy)]
    return [Bucket(f"{policies.key_prefix}id:ip:{ip}", policies.default)]


def own_buckets(policies: PolicySet, sub: str | None, ip: str) -> list[Bucket]:
    """The gateway's own endpoints, keyed as proxied requests are (``sub``, else client IP) but in
    buckets of their own: browsing the docs or polling the admin API spends no API budget."""
    if sub is not None:
        return [Bucket(f"{policies.key_prefix}own:user:{sub}", policies.own)]
    return [Bucket(f"{policies.key_prefix}own:ip:{ip}", policies.own)]


def login_buckets(policies: PolicySet, ip: str, username: str, client_id: str = "") -> list[Bucket]:
    """The login guard's buckets: per client IP, per username when the form names one, and per
    client id when the request authenticates a service account (the username policy for both).

    ``username`` is already in auth's normal form, ``client_id`` the one auth authenticates
    (``login_form.read_login``).
    """
    buckets = [Bucket(f"{policies.key_prefix}login:ip:{ip}", policies.login_ip)]
    if username:
        buckets.append(Bucket(f"{policies.key_prefix}login:user:{username_digest(username)}", policies.login_username))
    if client_id:
        buckets.append(
            Bucket(f"{policies.key_prefix}login:client:{username_digest(client_id)}", policies.login_username)
        )
    return buckets


def username_digest(username: str) -> str:
    """Hashed: a Redis key must not carry user input, and usernames are personal data (a client
    id is hashed alike)."""
    return hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
