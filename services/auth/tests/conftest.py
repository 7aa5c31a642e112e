from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from auth_service.accounts import create_user
from auth_service.app import create_app
from auth_service.cli import MIGRATIONS, VERSION_TABLE
from auth_service.issuing import ADMIN_SCOPES
from auth_service.settings import AuthSettings
from fastapi import FastAPI
from jose import jwt
from modelgate_shared.db import upgrade
from modelgate_shared.keys import PrivateKey, generate_private_key, private_key_pem
from modelgate_shared.revocation import is_revoked, subject_key
from modelgate_shared.tokens import FileKeySource, TokenVerifier

ISSUER = "http://gateway.test/auth"
AUDIENCE = "modelgate-api"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def rsa_key() -> PrivateKey:
    # RSA generation is slow: one key for the whole session.
    return generate_private_key("RS256")


def write_key(keys_dir: Path, name: str, key: PrivateKey) -> Path:
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = keys_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_key_pem(key))
    return path


@pytest.fixture
def keys_dir(tmp_path: Path, rsa_key: PrivateKey) -> Path:
    directory = tmp_path / "keys"
    write_key(directory, "20260101T000000000000Z-first.pem", rsa_key)
    return directory


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    return tmp_path / "public" / "jwks.json"


@pytest.fixture
def migrated_db(database_url: str) -> str:
    upgrade(MIGRATIONS, database_url, VERSION_TABLE)
    return database_url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(migrated_db: str, keys_dir: Path, jwks_file: Path, settings_overrides: dict[str, Any]) -> AuthSettings:
    values: dict[str, Any] = {
        "database_url": migrated_db,
        "keys_dir": keys_dir,
        "public_jwks_file": jwks_file,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "bcrypt_rounds": 4,
        "admin_username": None,
        "admin_password": None,
        **settings_overrides,
    }
    return AuthSettings(**values)


@pytest.fixture
async def app(settings: AuthSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as http:
        yield http


@pytest.fixture
def verifier(jwks_file: Path) -> TokenVerifier:
    """What inference and the gateway do: verify with the JWKS file auth published."""
    return TokenVerifier(FileKeySource(jwks_file, refresh_interval=0), issuer=ISSUER, audience=AUDIENCE)


async def sign_up(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD, email: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/users", json={"username": username, "password": password, "email": email or f"{username}@example.com"}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def login(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD, **extra: str
) -> httpx.Response:
    return await client.post(
        "/token", data={"grant_type": "password", "username": username, "password": password, **extra}
    )


async def tokens_for(client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    response = await login(client, username, password)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_admin(app: FastAPI, client: httpx.AsyncClient) -> str:
    """Creates the admin ``root`` and returns its access token."""
    state = app.state.auth
    async with state.sessions() as session:
        await create_user(
            session,
            state.hasher,
            username="root",
            email="root@example.com",
            password=PASSWORD,
            full_name=None,
            scopes=ADMIN_SCOPES,
        )
    return str((await tokens_for(client, "root"))["access_token"])


@pytest.fixture
async def admin_token(app: FastAPI, client: httpx.AsyncClient) -> str:
    return await make_admin(app, client)


# -- revocations in Redis (for the modules whose settings_overrides give auth a Redis) -------------


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of the test's own."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def revoked(store: redis.Redis, prefix: str, token: str) -> bool:
    """Whether the token's subject has a revocation in Redis that ends it."""
    claims = jwt.get_unverified_claims(token)
    raw = store.get(subject_key(prefix, claims["sub"]))
    return raw is not None and is_revoked(claims["iat"], int(raw))
