from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modelgate_shared.keys import PrivateKey, generate_private_key, public_jwk, write_jwks
from modelgate_shared.testing import TokenSigner, access_claims

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
    return access_claims(issuer=ISSUER, audience=AUDIENCE, username="alice", **overrides)


@pytest.fixture
def sign(rsa_key: PrivateKey) -> Callable[..., str]:
    def _sign(key: PrivateKey | None = None, headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
        signer = TokenSigner(key or rsa_key, issuer=ISSUER, audience=AUDIENCE, username="alice")
        return signer.token(headers=headers, **claim_overrides)

    return _sign
