"""Access-token verification, used by every service that accepts bearer tokens.

Verification is local: keys come from a file (mounted public keys) or from auth's
JWKS URL, cached, and refetched only when a token names an unknown ``kid`` (at most
once per ``refresh_interval``). A request never waits on auth, so predictions keep
working while auth is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from jose import jws
from jose.exceptions import JWSError

from .keys import (
    SUPPORTED_ALGORITHMS,
    KeyMaterialError,
    VerificationKey,
    allowed_algorithms,
    load_verification_keys,
    parse_jwks,
)

log = logging.getLogger(__name__)

REQUIRED_CLAIMS = ("iss", "aud", "sub", "scope", "iat", "nbf", "exp", "jti")


class InvalidToken(Exception):
    """The token cannot be accepted; ``str(exc)`` is safe to show the client."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    username: str | None
    scopes: frozenset[str]
    jti: str
    issued_at: int
    expires_at: int
    raw: Mapping[str, Any] = field(repr=False)
    # ``sid``: the session (auth's refresh-token family) the token was issued in, if it names one.
    session_id: str | None = None

    def has_scopes(self, *required: str) -> bool:
        return all(s in self.scopes for s in required)


class KeySource(Protocol):
    async def get(self, kid: str) -> VerificationKey | None: ...

    async def load(self) -> None: ...

    @property
    def ready(self) -> bool: ...


class _RefreshingSource:
    """Shared caching and rate-limited refresh; subclasses say how to fetch."""

    def __init__(self, refresh_interval: float) -> None:
        self._keys: dict[str, VerificationKey] = {}
        self._refresh_interval = refresh_interval
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    async def _fetch(self) -> dict[str, VerificationKey]:
        raise NotImplementedError

    async def load(self) -> None:
        """Fetch now; raise if it fails (used at start-up and readiness)."""
        self._last_attempt = time.monotonic()
        self._keys = await self._fetch()

    async def get(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        # Unknown kid: maybe a key rotation. Refetch, but never more often than the
        # interval, or a stream of garbage tokens would hammer the key source.
        async with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._last_attempt >= self._refresh_interval:
                try:
                    await self.load()
                except (KeyMaterialError, OSError, httpx.HTTPError) as exc:
                    log.warning("key refresh failed, keeping %d cached keys: %s", len(self._keys), exc)
                key = self._keys.get(kid)
        return key


class FileKeySource(_RefreshingSource):
    """Public keys from a PEM/JWKS file or a folder of them (the mounted public key)."""

    def __init__(self, path: Path, refresh_interval: float = 5.0) -> None:
        super().__init__(refresh_interval)
        self.path = path

    async def _fetch(self) -> dict[str, VerificationKey]:
        return await asyncio.to_thread(load_verification_keys, self.path)


class JwksUrlKeySource(_RefreshingSource):
    """Public keys from auth's JWKS endpoint."""

    def __init__(self, url: str, refresh_interval: float = 5.0, timeout: float = 3.0) -> None:
        super().__init__(refresh_interval)
        self.url = url
        self._timeout = timeout

    async def _fetch(self) -> dict[str, VerificationKey]:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.get(self.url)
            response.raise_for_status()
            return parse_jwks(response.json(), self.url)


def key_source_from_settings(public_keys: Path | None, jwks_url: str | None, refresh_interval: float) -> KeySource:
    if public_keys is not None:
        return FileKeySource(public_keys, refresh_interval)
    if jwks_url:
        return JwksUrlKeySource(jwks_url, refresh_interval)
    raise ValueError("set either a public key file/folder or a JWKS URL for token verification")


# Far above any token auth issues (about 1 KB); bounds the work a garbage token can cause.
MAX_TOKEN_LENGTH = 8192
# The longest kid accepted: a thumbprint is 43 characters.
MAX_KID_LENGTH = 128
# Header "typ" values accepted (compared in lower case); a token without one is accepted too.
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt"})


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity by default; a time claim must be a real number.
    raise ValueError(f"{name} is not a number")


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str):
        raise InvalidToken(f"invalid claims: {name} must be a string")
    return value


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    # Absent is allowed; present means a string (a null is a malformed claim, not an absent one).
    if name not in claims:
        return None
    return _string(claims, name)


def _time(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int in Python, never a NumericDate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"invalid claims: {name} must be a number")
    return float(value)


def check_header(header: Mapping[str, Any], algorithms: frozenset[str]) -> tuple[str, str]:
    """The header's ``(alg, kid)``, each checked for type before use."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        shown = repr(alg) if isinstance(alg, str) and len(alg) <= 16 else "of this token"
        raise InvalidToken(f"algorithm {shown} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token has no key id")
    if len(kid) > MAX_KID_LENGTH:
        raise InvalidToken("unknown signing key")
    typ = header.get("typ", "JWT")
    # RFC 8725 3.11: explicit typing. Auth writes "JWT"; RFC 9068 access tokens say "at+jwt".
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise InvalidToken("token type is not accepted")
    if "crit" in header:
        # RFC 7515 4.1.11: extensions listed in crit must be understood, and modelgate uses none.
        raise InvalidToken("token has critical header parameters this verifier does not support")
    return alg, kid


def parse_claims(payload: bytes, *, issuer: str, audience: str, leeway: float, now: float) -> AccessClaims:
    """Claims from a verified payload: every field type-checked, then times, issuer and audience."""
    try:
        claims = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(claims, dict):
        raise InvalidToken("malformed token")
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        raise InvalidToken(f"missing claims: {', '.join(missing)}")
    iss, sub, scope, jti = (_string(claims, name) for name in ("iss", "sub", "scope", "jti"))
    iat, nbf, exp = (_time(claims, name) for name in ("iat", "nbf", "exp"))
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise InvalidToken("invalid claims: aud must be a string or a list of strings")
    username = _optional_string(claims, "preferred_username")
    session_id = _optional_string(claims, "sid")
    if not sub:
        raise InvalidToken("invalid claims: sub is empty")
    if exp + leeway < now:
        raise InvalidToken("token expired")
    if nbf - leeway > now:
        raise InvalidToken("invalid claims: token is not valid yet")
    if iss != issuer:
        raise InvalidToken("invalid claims: wrong issuer")
    if audience not in audiences:
        raise InvalidToken("invalid claims: wrong audience")
    return AccessClaims(
        sub=sub,
        username=username,
        scopes=frozenset(scope.split()),
        jti=jti,
        issued_at=int(iat),
        expires_at=int(exp),
        raw=claims,
        session_id=session_id or None,
    )


class TokenVerifier:
    """Checks signature (allow-listed algorithm, known kid), iss, aud, time claims and required claims."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: frozenset[str] = SUPPORTED_ALGORITHMS,
        leeway: int = 30,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = allowed_algorithms(algorithms)
        self.leeway = leeway

    async def verify(self, token: str) -> AccessClaims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token is too large")
        try:
            header = jws.get_unverified_header(token)
        except JWSError:
            raise InvalidToken("malformed token") from None
        alg, kid = check_header(header, self.algorithms)
        key = await self.keys.get(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        if key.algorithm != alg:
            # The key decides the algorithm, never the token header.
            raise InvalidToken(f"algorithm {alg!r} does not match the signing key")
        try:
            payload = jws.verify(token, key.key, algorithms=[key.algorithm])
        except JWSError:
            # The token parsed above, so what fails now is the signature.
            raise InvalidToken("invalid signature") from None
        return parse_claims(payload, issuer=self.issuer, audience=self.audience, leeway=self.leeway, now=time.time())
