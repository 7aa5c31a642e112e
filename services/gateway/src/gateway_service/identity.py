"""Who a request is for rate limiting: the ``sub`` of a token the gateway verified.

The gateway never rejects a request for its token: an invalid or missing token just
means the client is identified by IP, and the upstream gives the real 401/403.
Every token's signature is checked on every request (no cache of verified tokens): an
identity the limiter keys on must never outlive the checks that established it.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelgate_shared.tokens import InvalidToken, TokenVerifier


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
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def resolve(self, authorization: bytes | None) -> Identity:
        token = bearer_token(authorization)
        if token is None:
            return ANONYMOUS
        try:
            claims = await self._verifier.verify(token)
        except InvalidToken:
            return ANONYMOUS
        return Identity(claims.sub, claims.scopes)
