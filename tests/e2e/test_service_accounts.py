"""Issue 11 through the gateway: a service account created through the admin API gets tokens by the
client_credentials grant and predicts; a rotated secret works beside the new one for the grace
period and not after; a disabled client's token is refused within seconds; and a standard OAuth2
library (Authlib) finds the token endpoint in the discovery document and calls predict."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import Stack
from modelgate_shared.tokens import FileKeySource, TokenVerifier

from ..conftest import PROXY_ADDRESS, SECRETS, bearer, eventually

PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
PREDICT = "/v1/models/diabetes/predict"
# Issue 11: a disabled client's existing token is refused within this.
REVOCATION_DEADLINE_SECONDS = 5.0


async def create_client(client: httpx.AsyncClient, admin_token: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/auth/clients", headers=bearer(admin_token), json={"name": f"job-{uuid.uuid4().hex[:8]}", **body}
    )
    assert response.status_code == 201, response.text
    SECRETS.add("client secret", response.json()["client_secret"])
    return dict(response.json())


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def token_by_basic(client: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret))


async def predict(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(PREDICT, json={"instances": [PIMA_ROW]}, headers=bearer(token))


@pytest.fixture
def claims_of(stack: Stack) -> TokenVerifier:
    return TokenVerifier(
        FileKeySource(stack.public_jwks, refresh_interval=0), issuer=stack.issuer, audience=stack.settings.audience
    )


async def test_a_client_created_through_the_admin_api_predicts(
    own_ip_client: httpx.AsyncClient, admin_token: str, claims_of: TokenVerifier
) -> None:
    client = own_ip_client
    made = await create_client(client, admin_token, scopes=["predict"])
    cid, secret = made["client_id"], made["client_secret"]

    issued = await token_by_basic(client, cid, secret)
    assert issued.status_code == 200, issued.text
    assert "refresh_token" not in issued.json()
    claims = await claims_of.verify(issued.json()["access_token"])
    assert (claims.sub, claims.raw["client_id"], claims.scopes) == (cid, cid, {"predict"})
    answer = await predict(client, issued.json()["access_token"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["label"] == 1

    # client_secret_post works as well; a scope it does not hold is refused.
    by_form = await client.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
    )
    assert by_form.status_code == 200, by_form.text
    assert (await predict(client, by_form.json()["access_token"])).status_code == 200
    too_much = await client.post(
        "/auth/token", data={"grant_type": "client_credentials", "scope": "admin"}, headers=basic(cid, secret)
    )
    assert (too_much.status_code, too_much.json()["error"]) == (400, "invalid_scope")
    # A wrong secret, through the gateway too: 401 invalid_client with a Basic challenge.
    wrong = await token_by_basic(client, cid, "not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic ")

    # The gateway knows the caller by the token's sub, the client id (what its rate limits key on).
    async def logged() -> list[dict[str, Any]] | None:
        response = await client.get(
            "/admin/request-log", headers=bearer(admin_token), params={"user": cid, "path": PREDICT}
        )
        assert response.status_code == 200, response.text
        rows = response.json()["items"]
        return rows if len(rows) == 2 else None

    rows = await eventually(logged, "the client's predictions in the request log")
    assert {row["user_sub"] for row in rows} == {cid}

    # Every authentication is in the client's login history.
    history = await client.get(f"/auth/clients/{cid}/logins", headers=bearer(admin_token))
    assert [(r["success"], r["reason"]) for r in history.json()["items"]] == [
        (False, "wrong_client_secret"),
        (False, "invalid_scope"),
        (True, "ok"),
        (True, "ok"),
    ]


async def test_a_rotated_secret_works_for_the_grace_period_only(
    own_ip_client: httpx.AsyncClient, admin_token: str, stack: Stack
) -> None:
    client = own_ip_client
    made = await create_client(client, admin_token)
    cid, old = made["client_id"], made["client_secret"]
    rotation = await client.post(f"/auth/clients/{cid}/rotate-secret", headers=bearer(admin_token))
    assert rotation.status_code == 200, rotation.text
    new = rotation.json()["client_secret"]
    SECRETS.add("client secret", new)
    assert rotation.json()["previous_secret_expires_at"] is not None

    # During the grace period (the default, a day) both secrets get tokens that predict.
    for secret in (old, new):
        issued = await token_by_basic(client, cid, secret)
        assert issued.status_code == 200, issued.text
        assert (await predict(client, issued.json()["access_token"])).status_code == 200

    # The grace period over (its end moved to the past in auth's database): only the new one.
    assert stack.postgres is not None
    conn = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    try:
        moved = await conn.execute(
            "UPDATE clients SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1", cid
        )
    finally:
        await conn.close()
    assert moved == "UPDATE 1"
    refused = await token_by_basic(client, cid, old)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    assert (await token_by_basic(client, cid, new)).status_code == 200


async def test_disabling_a_client_refuses_its_token_within_seconds(
    own_ip_client: httpx.AsyncClient, admin_token: str
) -> None:
    client = own_ip_client
    made = await create_client(client, admin_token)
    cid, secret = made["client_id"], made["client_secret"]
    token = (await token_by_basic(client, cid, secret)).json()["access_token"]
    assert (await predict(client, token)).status_code == 200

    disabled = await client.patch(f"/auth/clients/{cid}", headers=bearer(admin_token), json={"disabled": True})
    assert disabled.status_code == 200, disabled.text

    async def refused() -> httpx.Response | None:
        answer = await predict(client, token)
        return answer if answer.status_code == 401 else None

    answer = await eventually(refused, "the disabled client's token refused", within=REVOCATION_DEADLINE_SECONDS)
    assert answer.json()["error"] == "invalid_token"
    # And it gets no new one.
    again = await token_by_basic(client, cid, secret)
    assert (again.status_code, again.json()["error"]) == (401, "invalid_client")


async def test_deleting_a_client_refuses_its_token_within_seconds(
    own_ip_client: httpx.AsyncClient, admin_token: str
) -> None:
    client = own_ip_client
    made = await create_client(client, admin_token)
    token = (await token_by_basic(client, made["client_id"], made["client_secret"])).json()["access_token"]
    assert (await predict(client, token)).status_code == 200
    deleted = await client.delete(f"/auth/clients/{made['client_id']}", headers=bearer(admin_token))
    assert deleted.status_code == 204

    async def refused() -> bool | None:
        return True if (await predict(client, token)).status_code == 401 else None

    await eventually(refused, "the deleted client's token refused", within=REVOCATION_DEADLINE_SECONDS)


async def test_authlib_gets_a_token_from_the_discovery_document_and_predicts(
    stack: Stack, own_ip_client: httpx.AsyncClient, admin_token: str, own_ip: str
) -> None:
    made = await create_client(own_ip_client, admin_token)
    discovery = await own_ip_client.get("/auth/.well-known/openid-configuration")
    assert discovery.status_code == 200
    metadata = discovery.json()
    assert "client_credentials" in metadata["grant_types_supported"]

    def with_authlib(method: str) -> tuple[dict[str, Any], httpx.Response]:
        # Authlib's sync client, as a batch job would use it: from another thread, not the test's loop.
        transport = httpx.HTTPTransport(local_address=PROXY_ADDRESS)
        with OAuth2Client(
            client_id=made["client_id"],
            client_secret=made["client_secret"],
            token_endpoint_auth_method=method,
            scope="predict",
            transport=transport,
            headers={"X-Forwarded-For": own_ip},
            timeout=30,
        ) as oauth:
            token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
            return dict(token), oauth.post(f"{stack.gateway_url}{PREDICT}", json={"instances": [PIMA_ROW]})

    for method in ("client_secret_basic", "client_secret_post"):
        assert method in metadata["token_endpoint_auth_methods_supported"]
        token, answer = await asyncio.to_thread(with_authlib, method)
        SECRETS.add_token("access token", token["access_token"])
        assert token["token_type"] == "bearer" and token["scope"] == "predict"
        assert "refresh_token" not in token
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] == 1
