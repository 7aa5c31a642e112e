from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_service.app import create_app
from gateway_service.cli import migrate
from gateway_service.settings import GatewaySettings
from jose import jwt
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.keys import private_key_pem, public_jwk, write_jwks

from .servers import serve
from .upstream_app import upstream_app

ISSUER = "http://127.0.0.1:8000/auth"
AUDIENCE = "modelgate-api"


class Signer:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.pem = private_key_pem(key).decode()
        self.kid = public_jwk(key.public_key())["kid"]

    def token(self, sub: str | None = None, scopes: str = "predict models:read", **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub or str(uuid.uuid4()),
            "preferred_username": "tester",
            "scope": scopes,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(payload, self.pem, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def public_keys(signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(signer.pem.encode(), password=None)
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    write_jwks(path, {"keys": [public_jwk(key.public_key())]})  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="session")
def auth_upstream() -> Iterator[str]:
    with serve(upstream_app("auth")) as url:
        yield url


@pytest.fixture(scope="session")
def inference_upstream() -> Iterator[str]:
    with serve(upstream_app("inference")) as url:
        yield url


@pytest.fixture
def gateway_db(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def gateway_env(
    gateway_db: str, redis_url: str, public_keys: Path, auth_upstream: str, inference_upstream: str
) -> dict[str, str]:
    """Settings for one test's gateway(s): own database and own Redis key space."""
    return {
        "MODELGATE_GATEWAY_DATABASE_URL": gateway_db,
        "MODELGATE_GATEWAY_REDIS_URL": redis_url,
        "MODELGATE_GATEWAY_REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:10]}:",
        "MODELGATE_GATEWAY_PUBLIC_KEYS": str(public_keys),
        "MODELGATE_GATEWAY_ISSUER": ISSUER,
        "MODELGATE_GATEWAY_AUDIENCE": AUDIENCE,
        "MODELGATE_GATEWAY_AUTH_URL": auth_upstream,
        "MODELGATE_GATEWAY_INFERENCE_URL": inference_upstream,
        "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "0.05",
    }


@pytest.fixture
def make_gateway(gateway_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Factory: start an in-process gateway (real HTTP) with setting overrides; returns its URL."""
    with contextlib.ExitStack() as stack:

        def factory(**overrides: str) -> str:
            for key, value in {**gateway_env, **overrides}.items():
                monkeypatch.setenv(key, value)
            return stack.enter_context(serve(create_app(GatewaySettings())))  # type: ignore[call-arg]

        yield factory


@pytest.fixture
def gateway(make_gateway: Callable[..., str]) -> str:
    return make_gateway()


def log_rows(database_url: str, where: str = "TRUE") -> list[asyncpg.Record]:
    async def query() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return await conn.fetch(f"SELECT * FROM request_log WHERE {where} ORDER BY id")  # noqa: S608
        finally:
            await conn.close()

    return asyncio.run(query())
