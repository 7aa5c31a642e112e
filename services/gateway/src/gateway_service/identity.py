"""Who a request is for rate limiting: the ``sub`` of a token the gateway verified.

The gateway never rejects a request for its token: an invalid or missing token just
means the client is identified by IP, and the upstream gives the real 401/403.
Verified tokens are cached (until they expire) so a request costs a dict lookup, not
an RSA signature check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelgate_shared.tokens import InvalidToken, TokenVerifier

# A rejected token is remembered briefly so a client repeating a bad token costs nothing.
_NEGATIVE_TTL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Identity:
    sub: str | None
    scopes: frozenset[str]


ANONYMOUS = Identity(None, frozenset())


def bearer_token(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class IdentityResolver:
    def __init__(self, verifier: TokenVerifier, cache_size: int) -> None:
        self._verifier = verifier
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Identity, float]] = {}

    async def resolve(self, authorization: bytes | None) -> Identity:
        token = bearer_token(authorization)
        if token is None:
            return ANONYMOUS
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            claims = await self._verifier.verify(token)
        except InvalidToken:
            self._remember(token, ANONYMOUS, now + _NEGATIVE_TTL_SECONDS)
            return ANONYMOUS
        identity = Identity(claims.sub, claims.scopes)
        self._remember(token, identity, claims.expires_at + self._verifier.leeway)
        return identity

    def _remember(self, token: str, identity: Identity, until: float) -> None:
        if self._cache_size == 0:
            return
        if len(self._cache) >= self._cache_size:
            # Oldest first (dicts keep insertion order): cheap, and good enough for a cache of live tokens.
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = (identity, until)
