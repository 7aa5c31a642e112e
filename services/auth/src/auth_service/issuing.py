"""Token minting: signed access JWTs and opaque refresh tokens. Pure functions."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from jose import jwt

from .keyring import SigningKey

SCOPES: tuple[str, ...] = ("predict", "models:read", "admin")
DEFAULT_SCOPES: tuple[str, ...] = ("predict", "models:read")
ADMIN_SCOPES: tuple[str, ...] = SCOPES

# 32 random bytes = 256 bits: past any online or offline guessing of a refresh token.
REFRESH_TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class AccessTokenRequest:
    issuer: str
    audience: str
    subject: uuid.UUID
    username: str
    scopes: tuple[str, ...]
    ttl_seconds: int
    # The refresh-token family (one per login): the ``sid`` claim, which lets a revoked session's
    # access tokens be refused at the gateway without ending the user's other sessions.
    session_id: uuid.UUID | None = None


def ordered_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Known scopes in canonical order (stable tokens, readable responses)."""
    wanted = set(scopes)
    return tuple(s for s in SCOPES if s in wanted)


def parse_scope(value: str | None) -> set[str]:
    return set(value.split()) if value else set()


def issue_access_token(key: SigningKey, request: AccessTokenRequest, now: datetime) -> str:
    issued = int(now.timestamp())
    claims = {
        "iss": request.issuer,
        "aud": request.audience,
        "sub": str(request.subject),
        "preferred_username": request.username,
        "scope": " ".join(request.scopes),
        "iat": issued,
        "nbf": issued,
        "exp": issued + request.ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if request.session_id is not None:
        claims["sid"] = str(request.session_id)
    # python-jose ships no type information; encode returns the compact JWS string.
    return cast(str, jwt.encode(claims, key.signer, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"}))


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> str:
    # A fast hash is right here: the token has 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()
