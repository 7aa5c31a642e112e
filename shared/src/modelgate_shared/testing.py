"""Helpers for the services' test suites: a token signer standing in for auth, and the dataset.

Part of the package (not a conftest) so every suite signs tokens and finds the Pima CSV the
same way; nothing in a running service imports it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from jose import jwt

from .keys import PrivateKey, generate_private_key, private_key_pem, public_jwk, write_jwks
from .training_data import DEFAULT_TRAINING_DATA

# The dataset beside a checkout of the project (../shared/data), never copied into it.
LOCAL_TRAINING_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pima-indians-diabetes.csv"


def training_data_source() -> str:
    """Where tests and the bench read the Pima CSV: ``MODELGATE_TRAINING_DATA``, else the
    copy beside the checkout, else the public URL."""
    if value := os.environ.get("MODELGATE_TRAINING_DATA"):
        return value
    return str(LOCAL_TRAINING_DATA) if LOCAL_TRAINING_DATA.exists() else DEFAULT_TRAINING_DATA


def access_claims(
    *,
    issuer: str = "http://127.0.0.1:8000/auth",
    audience: str = "modelgate-api",
    scope: str = "predict models:read",
    username: str = "tester",
    **overrides: Any,
) -> dict[str, Any]:
    """Every claim auth issues, valid for ten minutes; an override of ``None`` leaves that claim out."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": str(uuid.uuid4()),
        "preferred_username": username,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}


class TokenSigner:
    """Signs access tokens the way auth does, with a key of its own."""

    def __init__(
        self,
        key: PrivateKey | None = None,
        *,
        issuer: str = "http://127.0.0.1:8000/auth",
        audience: str = "modelgate-api",
        username: str = "tester",
    ) -> None:
        self.key = key or generate_private_key("RS256")
        self.jwk = public_jwk(self.key.public_key())
        self.kid = self.jwk["kid"]
        self.algorithm = self.jwk["alg"]
        self.pem = private_key_pem(self.key).decode()
        self.issuer = issuer
        self.audience = audience
        self.username = username

    def claims(self, scope: str = "predict models:read", **overrides: Any) -> dict[str, Any]:
        return access_claims(
            issuer=self.issuer, audience=self.audience, scope=scope, username=self.username, **overrides
        )

    def token(self, scope: str = "predict models:read", *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        encoded: str = jwt.encode(
            self.claims(scope, **claims),
            self.pem,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )
        return encoded

    def auth_header(self, scope: str = "predict models:read", **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scope, **claims)}"}

    def write_jwks(self, path: Path) -> Path:
        """Publish this signer's public key as a JWKS file, as auth does for the verifiers."""
        write_jwks(path, {"keys": [self.jwk]})
        return path
