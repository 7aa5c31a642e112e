from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from auth_service.accounts import create_user
from auth_service.app import create_app
from auth_service.cli import main
from auth_service.issuing import AccessTokenRequest, issue_access_token
from auth_service.keyring import KeyRing, create_key
from auth_service.models import User
from auth_service.passwords import PasswordHasher
from auth_service.settings import AuthSettings
from fastapi import FastAPI
from jose import jwt
from modelgate_shared.keys import KeyMaterialError, thumbprint
from modelgate_shared.tokens import TokenVerifier
from sqlalchemy import select

from .conftest import AUDIENCE, ISSUER, PASSWORD, bearer, login, sign_up, tokens_for


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "signing_key": "ok"}
    assert ready.headers["x-request-id"]


async def test_readiness_fails_when_the_database_is_unreachable(settings: AuthSettings) -> None:
    broken = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/nothing"})
    app = create_app(broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as http:
            ready = await http.get("/readyz")
            assert (await http.get("/healthz")).status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("failed")
    assert ready.json()["checks"]["signing_key"] == "ok"


async def test_stopping_the_app_stops_its_hashing_pool(settings: AuthSettings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        hasher = app.state.auth.hasher
        assert await hasher.verify("correct horse battery", None) == (False, None)
    with pytest.raises(RuntimeError):
        await hasher.verify("correct horse battery", None)


async def test_start_fails_clearly_without_keys(settings: AuthSettings, tmp_path: Path) -> None:
    app = create_app(settings.model_copy(update={"keys_dir": tmp_path / "empty"}))
    with pytest.raises(KeyMaterialError, match="keys generate"):
        async with app.router.lifespan_context(app):
            pass


async def test_jwks_publishes_thumbprint_kids_and_no_private_parts(client: httpx.AsyncClient, jwks_file: Path) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert key["kid"] == thumbprint(key)
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    # The file the verifiers read says the same.
    assert json.loads(await anyio.Path(jwks_file).read_text()) == response.json()


async def test_token_header_kid_is_the_published_thumbprint(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    header = jwt.get_unverified_header(token)
    published = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert header["alg"] == "RS256"
    assert header["kid"] == published[0]["kid"]


async def test_openid_configuration(client: httpx.AsyncClient) -> None:
    body = (await client.get("/.well-known/openid-configuration")).json()
    assert body["issuer"] == ISSUER
    assert body["token_endpoint"] == f"{ISSUER}/token"
    assert body["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert body["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert set(body["grant_types_supported"]) == {"password", "refresh_token", "client_credentials"}
    assert body["token_endpoint_auth_methods_supported"] == ["none", "client_secret_basic", "client_secret_post"]
    assert body["scopes_supported"] == ["predict", "models:read", "admin"]


async def test_rotation_keeps_old_tokens_valid_and_publishes_both_keys(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: AuthSettings,
    verifier: TokenVerifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.state.auth.ring.rescan_seconds = 0.0
    monkeypatch.setenv("MODELGATE_AUTH_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("MODELGATE_AUTH_PUBLIC_JWKS_FILE", str(settings.public_jwks_file))
    await sign_up(client)
    before = (await tokens_for(client))["access_token"]
    old_kid = app.state.auth.ring.signing.kid
    assert jwt.get_unverified_header(before)["kid"] == old_kid

    assert main(["keys", "rotate"]) == 0

    jwks = (await client.get("/.well-known/jwks.json")).json()
    kids = {k["kid"] for k in jwks["keys"]}
    assert len(kids) == 2
    assert old_kid in kids
    new_kid = app.state.auth.ring.signing.kid
    assert new_kid != old_kid
    after = (await tokens_for(client))["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    # Verifiers reading the published file accept tokens from both keys.
    assert (await verifier.verify(before)).username == "alice"
    assert (await verifier.verify(after)).username == "alice"
    # And auth itself still accepts the pre-rotation token.
    assert (await client.get("/users/me", headers=bearer(before))).status_code == 200


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize(
    "settings_overrides", [{"admin_username": "Root", "admin_password": "root password 123"}], indirect=True
)
async def test_first_admin_is_created_from_settings_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = (await tokens_for(client, "root", "root password 123"))["access_token"]
    listing = await client.get("/users", headers=bearer(token))
    assert listing.status_code == 200
    assert [u["username"] for u in listing.json()["items"]] == ["root"]
    assert listing.json()["items"][0]["scopes"] == ["predict", "models:read", "admin"]
    # A second start must not reset the password someone changed since.
    await client.patch(
        "/users/me", headers=bearer(token), json={"password": PASSWORD, "current_password": "root password 123"}
    )
    again = create_app(app.state.auth.settings)
    async with again.router.lifespan_context(again):
        pass
    assert (await login(client, "root", PASSWORD)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"bcrypt_rounds": 5}], indirect=True)
async def test_hashes_of_a_lower_cost_are_upgraded_at_login(client: httpx.AsyncClient, app: FastAPI) -> None:
    state = app.state.auth
    async with state.sessions() as session:
        await create_user(
            session,
            PasswordHasher(4),
            username="alice",
            email="alice@example.com",
            password=PASSWORD,
            full_name=None,
            scopes=["predict"],
        )
    assert (await login(client)).status_code == 200
    async with state.sessions() as session:
        stored = await session.scalar(select(User.password_hash))
    assert stored is not None and ",r=5$" in stored
    assert (await login(client)).status_code == 200


async def test_token_from_a_key_another_replica_added_is_accepted(
    client: httpx.AsyncClient, app: FastAPI, settings: AuthSettings
) -> None:
    user = await sign_up(client)
    create_key(settings.keys_dir, "ES256")
    other_replica = KeyRing(settings.keys_dir)
    other_replica.load()
    request = AccessTokenRequest(ISSUER, AUDIENCE, uuid.UUID(user["id"]), "alice", ("predict",), 900)
    token = issue_access_token(other_replica.signing, request, datetime.now(UTC))
    app.state.auth.ring.rescan_seconds = 0.0
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["id"] == user["id"]
