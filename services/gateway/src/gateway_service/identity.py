"""Who a request is for rate limiting: the ``sub`` of a token the gateway verified.

The gateway never rejects a request for an invalid or missing token: that just means the
client is identified by IP, and the upstream gives the real 401/403. A verified token's
``iat`` and ``sid`` go with its identity: the rate-limit script also checks whether auth
has revoked it since (``modelgate_shared.revocation``), and that the gateway does refuse.
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
    # Of a verified token: when it was issued, and its session (auth's ``sid``) if it names one.
    issued_at: int | None = None
    session_id: str | None = None


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
        return Identity(claims.sub, claims.scopes, claims.issued_at, claims.session_id)
