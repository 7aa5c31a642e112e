from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_service.app import create_app
from gateway_service.cli import migrate
from gateway_service.settings import GatewaySettings
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.testing import TokenSigner

from .servers import serve
from .upstream_app import upstream_app

ISSUER = "http://127.0.0.1:8000/auth"
AUDIENCE = "modelgate-api"


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048), issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="session")
def public_keys(signer: TokenSigner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return signer.write_jwks(tmp_path_factory.mktemp("keys") / "jwks.json")


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
        # The tests read /metrics as an operator on this host would (the default allows no one
        # without an admin token: test_docs_metrics.py).
        "MODELGATE_GATEWAY_METRICS_ALLOW": '["127.0.0.1/32"]',
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
