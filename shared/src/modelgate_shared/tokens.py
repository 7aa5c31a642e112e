"""Access-token verification, used by every service that accepts bearer tokens.

Verification is local: keys come from a file (mounted public keys) or from auth's
JWKS URL, cached, and refetched only when a token names an unknown ``kid`` (at most
once per ``refresh_interval``). A request never waits on auth, so predictions keep
working while auth is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from .keys import SUPPORTED_ALGORITHMS, KeyMaterialError, VerificationKey, load_verification_keys, parse_jwks

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

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

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
        bad = set(algorithms) - SUPPORTED_ALGORITHMS
        if bad or not algorithms:
            raise ValueError(
                f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}, got {sorted(algorithms)}"
            )
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(algorithms)
        self.leeway = leeway
        self._options = {
            "leeway": leeway,
            **{f"require_{c}": True for c in ("iat", "exp", "nbf", "iss", "aud", "sub", "jti")},
        }

    async def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise InvalidToken("malformed token") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if alg not in self.algorithms:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self.keys.get(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        if key.algorithm != alg:
            # The key decides the algorithm, never the token header.
            raise InvalidToken(f"algorithm {alg!r} does not match the signing key")
        return self._decode(token, key)

    def _decode(self, token: str, key: VerificationKey) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options=self._options,
            )
        except ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except JWTClaimsError as exc:
            raise InvalidToken(f"invalid claims: {exc}") from None
        except JWTError as exc:
            # jose reports a bad signature and a missing required claim with the same type.
            message = str(exc)
            if "ignature" in message or "JWS" in message:
                raise InvalidToken("invalid signature") from None
            raise InvalidToken(f"invalid token: {message}") from None
        missing = [c for c in REQUIRED_CLAIMS if c not in claims]
        if missing:
            raise InvalidToken(f"missing claims: {', '.join(missing)}")
        scope = claims["scope"]
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise InvalidToken("invalid claims: sub and scope must be strings")
        username = claims.get("preferred_username")
        return AccessClaims(
            sub=claims["sub"],
            username=username if isinstance(username, str) else None,
            scopes=frozenset(scope.split()),
            jti=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            raw=claims,
        )
