from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jose import jwt
from modelgate_shared.keys import PrivateKey, generate_private_key, private_key_pem, public_jwk, write_jwks

ISSUER = "http://issuer.test/auth"
AUDIENCE = "modelgate-api"


@pytest.fixture(scope="session")
def rsa_key() -> PrivateKey:
    return generate_private_key("RS256")


@pytest.fixture(scope="session")
def ec_key() -> PrivateKey:
    return generate_private_key("ES256")


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: PrivateKey, ec_key: PrivateKey) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, {"keys": [public_jwk(rsa_key.public_key()), public_jwk(ec_key.public_key())]})
    return path


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "preferred_username": "alice",
        "scope": "predict models:read",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def sign(rsa_key: PrivateKey) -> Callable[..., str]:
    def _sign(key: PrivateKey | None = None, headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
        k = key or rsa_key
        jwk = public_jwk(k.public_key())
        return jwt.encode(
            claims(**claim_overrides),
            private_key_pem(k).decode(),
            algorithm=jwk["alg"],
            headers={"kid": jwk["kid"], **(headers or {})},
        )

    return _sign
