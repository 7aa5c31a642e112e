"""Token minting: signed access JWTs, and the opaque secrets (refresh tokens, client secrets). Pure
functions."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from jose import jwt
from modelgate_shared.scopes import BASE_SCOPES, MODELS_READ, PREDICT

from .keyring import SigningKey

# What a scope is (and their order) is modelgate_shared.scopes; these are auth's own defaults:
# a new user's or service account's, and the bootstrap admin's (no model scopes: an admin
# grants those per model).
DEFAULT_SCOPES: tuple[str, ...] = (PREDICT, MODELS_READ)
ADMIN_SCOPES: tuple[str, ...] = BASE_SCOPES

# 32 random bytes = 256 bits: past any online or offline guessing of a refresh token or a
# client secret.
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class AccessTokenRequest:
    issuer: str
    audience: str
    # A user's id, or a service account's client id.
    subject: uuid.UUID | str
    # ``preferred_username``: a user's name; None for a service account.
    username: str | None
    scopes: tuple[str, ...]
    ttl_seconds: int
    # The refresh-token family (one per login): the ``sid`` claim, which lets a revoked session's
    # access tokens be refused at the gateway without ending the user's other sessions.
    session_id: uuid.UUID | None = None
    # A service account's token (client_credentials grant): the ``client_id`` claim (RFC 9068).
    client_id: str | None = None


def parse_scope(value: str | None) -> set[str]:
    return set(value.split()) if value else set()


def issue_access_token(key: SigningKey, request: AccessTokenRequest, now: datetime) -> str:
    issued = int(now.timestamp())
    claims: dict[str, str | int] = {
        "iss": request.issuer,
        "aud": request.audience,
        "sub": str(request.subject),
        "scope": " ".join(request.scopes),
        "iat": issued,
        "nbf": issued,
        "exp": issued + request.ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if request.username is not None:
        claims["preferred_username"] = request.username
    if request.session_id is not None:
        claims["sid"] = str(request.session_id)
    if request.client_id is not None:
        claims["client_id"] = request.client_id
    # python-jose ships no type information; encode returns the compact JWS string.
    return cast(str, jwt.encode(claims, key.signer, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"}))


def new_secret() -> str:
    """A refresh token or a client secret: 256 random bits, base64url (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """What is stored of a secret ``new_secret`` made (hex SHA-256).

    A fast unkeyed hash is right here, and bcrypt is not needed: bcrypt's cost and a pepper only
    slow the guessing of a low-entropy secret (a password) from its hash, and 256 random bits
    cannot be guessed at any speed. ``surrogatepass``: whatever a client presents hashes, never
    raises (an unpaired surrogate matches no secret of ours).
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
