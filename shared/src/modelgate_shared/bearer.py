"""FastAPI dependencies for bearer-token routes (RFC 6750 error semantics)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from .tokens import AccessClaims, InvalidToken, TokenVerifier

# The token endpoint as clients see it: relative to the gateway root, where clients reach auth.
TOKEN_PATH = "/auth/token"  # noqa: S105 - a path, not a secret

# auto_error=False: a missing header must get the same RFC 6750 401 as a bad token.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_PATH, auto_error=False)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


def _challenge(error: str | None, description: str, scopes: tuple[str, ...] = ()) -> str:
    parts = ['Bearer realm="modelgate"']
    if error:
        parts.append(f'error="{error}"')
        parts.append(f'error_description="{description}"')
    if scopes:
        parts.append(f'scope="{" ".join(scopes)}"')
    return ", ".join(parts)


def unauthorized(description: str, *, error: str | None = "invalid_token") -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=description,
        headers={"WWW-Authenticate": _challenge(error, description.replace('"', "'"))},
    )


def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


async def verified_claims(request: Request, token: BearerToken) -> AccessClaims:
    """Dependency: the claims of a verified token, whatever its scopes. FastAPI runs it once
    per request however many dependencies ask for it."""
    if not token:
        # RFC 6750 3.1: no error code when the request had no credentials at all.
        raise unauthorized("missing bearer token", error=None)
    try:
        claims = await get_verifier(request).verify(token)
    except InvalidToken as exc:
        raise unauthorized(str(exc)) from None
    request.state.claims = claims
    return claims


VerifiedClaims = Annotated[AccessClaims, Depends(verified_claims)]


def insufficient_scope(claims: AccessClaims, scopes: tuple[str, ...]) -> HTTPException:
    """The 403 for a token that lacks some of ``scopes`` (RFC 6750 3.1 ``insufficient_scope``)."""
    missing = " ".join(s for s in scopes if s not in claims.scopes)
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        detail=f"token lacks required scope: {missing}",
        headers={"WWW-Authenticate": _challenge("insufficient_scope", f"requires {missing}", scopes)},
    )


def check_scopes(claims: AccessClaims, *scopes: str) -> AccessClaims:
    """``claims`` if they carry every scope in ``scopes``, else the 403."""
    if not claims.has_scopes(*scopes):
        raise insufficient_scope(claims, scopes)
    return claims


def require_scopes(*scopes: str) -> Callable[..., Awaitable[AccessClaims]]:
    """Dependency: a verified token carrying every scope in ``scopes``."""

    async def dependency(claims: VerifiedClaims) -> AccessClaims:
        return check_scopes(claims, *scopes)

    return dependency
