"""Service accounts (issue 11): the admin API, the client_credentials grant with client_secret_basic
and client_secret_post, rotation with a grace period, disabling, the login history and revocation."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import redis
from auth_service.models import Client, Login
from fastapi import FastAPI
from modelgate_shared.tokens import TokenVerifier
from sqlalchemy import select, update

from .conftest import PASSWORD, bearer, login, revoked, sign_up, tokens_for

CLIENT_CREDENTIALS = {"grant_type": "client_credentials"}
BAD_CLIENT = {"error": "invalid_client", "error_description": "client authentication failed"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 2.3.1 as written: id and secret form-urlencoded, then RFC 7617."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}


async def create(client: httpx.AsyncClient, admin_token: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/clients", headers=bearer(admin_token), json={"name": "batch job", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def by_basic(client: httpx.AsyncClient, client_id: str, secret: str, **form: str) -> httpx.Response:
    return await client.post("/token", data={**CLIENT_CREDENTIALS, **form}, headers=basic(client_id, secret))


async def by_post(client: httpx.AsyncClient, client_id: str, secret: str, **form: str) -> httpx.Response:
    data = {**CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": secret, **form}
    return await client.post("/token", data=data)


@pytest.fixture
async def service(client: httpx.AsyncClient, admin_token: str) -> dict[str, Any]:
    return await create(client, admin_token)


async def test_create_returns_the_secret_once_and_never_again(client: httpx.AsyncClient, admin_token: str) -> None:
    me = (await client.get("/users/me", headers=bearer(admin_token))).json()
    response = await client.post(
        "/clients", headers=bearer(admin_token), json={"name": " nightly scoring ", "scopes": ["predict"]}
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    secret = created.pop("client_secret")
    assert len(secret) >= 43  # 256 bits, base64url
    assert created["client_id"].startswith("mgc_") and len(created["client_id"]) >= 4 + 22
    assert created["name"] == "nightly scoring"
    assert created["owner_id"] == me["id"]  # the calling admin by default
    assert created["scopes"] == ["predict"]
    assert created["disabled"] is False
    assert created["previous_secret_expires_at"] is None

    read = await client.get(f"/clients/{created['client_id']}", headers=bearer(admin_token))
    assert read.json() == created
    listed = (await client.get("/clients", headers=bearer(admin_token))).json()
    assert listed["total"] == 1 and listed["items"] == [created]
    assert secret not in read.text + str(listed)


async def test_stored_is_only_a_hash(app: FastAPI, service: dict[str, Any]) -> None:
    async with app.state.auth.sessions() as session:
        row = await session.get(Client, service["client_id"])
    assert row is not None
    assert service["client_secret"] not in str(
        [row.secret_hash, row.previous_secret_hash, row.name, row.id, row.scopes]
    )
    assert len(row.secret_hash) == 64


async def test_owner_scopes_and_name_are_validated(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client, "owner")
    owned = await create(client, admin_token, owner_id=user["id"])
    assert owned["owner_id"] == user["id"]
    assert owned["scopes"] == ["predict", "models:read"]  # the default
    ours = await client.get("/clients", headers=bearer(admin_token), params={"owner_id": user["id"]})
    assert [c["client_id"] for c in ours.json()["items"]] == [owned["client_id"]]
    bad_bodies = [
        ({"name": "x", "owner_id": str(uuid.uuid4())}, "no user with id"),
        ({"name": "x", "scopes": ["root"]}, "unknown scope"),
        ({"name": ""}, "too_short"),
        ({"name": "a\nb"}, "name"),
        ({"name": "x", "client_secret": "chosen"}, "Extra inputs"),
    ]
    for body, why in bad_bodies:
        response = await client.post("/clients", headers=bearer(admin_token), json=body)
        assert response.status_code == 422, (body, response.text)
        assert why in response.text, (body, response.text)
    assert (await client.get("/clients/mgc_nope", headers=bearer(admin_token))).status_code == 404


async def test_admin_routes_need_an_admin(client: httpx.AsyncClient, service: dict[str, Any]) -> None:
    await sign_up(client)
    token = (await tokens_for(client))["access_token"]
    cid = service["client_id"]
    for method, path in [
        ("GET", "/clients"),
        ("POST", "/clients"),
        ("GET", f"/clients/{cid}"),
        ("PATCH", f"/clients/{cid}"),
        ("POST", f"/clients/{cid}/rotate-secret"),
        ("DELETE", f"/clients/{cid}"),
        ("GET", f"/clients/{cid}/logins"),
    ]:
        assert (await client.request(method, path, headers=bearer(token))).status_code == 403, (method, path)
        assert (await client.request(method, path)).status_code == 401, (method, path)


async def test_basic_and_post_get_the_same_kind_of_token(
    client: httpx.AsyncClient, service: dict[str, Any], verifier: TokenVerifier
) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    for response in (await by_basic(client, cid, secret), await by_post(client, cid, secret)):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        # RFC 6749 4.4.3: no refresh token.
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert body["scope"] == "predict models:read"
        claims = await verifier.verify(body["access_token"])
        assert claims.sub == cid
        assert claims.raw["client_id"] == cid
        assert claims.username is None and claims.session_id is None
        assert claims.scopes == {"predict", "models:read"}
        assert set(claims.raw) == {"iss", "aud", "sub", "client_id", "scope", "iat", "nbf", "exp", "jti"}


async def test_basic_credentials_are_form_urlencoded_first(client: httpx.AsyncClient, service: dict[str, Any]) -> None:
    # RFC 6749 2.3.1: the id and secret are form-urlencoded before Base64; "m" is "%6D".
    cid, secret = service["client_id"], service["client_secret"]
    raw = f"%6D{cid[1:]}:{secret}".encode()
    response = await client.post(
        "/token", data=CLIENT_CREDENTIALS, headers={"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
    )
    assert response.status_code == 200, response.text


async def test_requested_scopes_narrow_and_must_be_held(
    client: httpx.AsyncClient, service: dict[str, Any], verifier: TokenVerifier
) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    narrowed = await by_basic(client, cid, secret, scope="predict")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "predict"
    assert (await verifier.verify(narrowed.json()["access_token"])).scopes == {"predict"}
    for scope in ("predict admin", "bogus"):
        refused = await by_basic(client, cid, secret, scope=scope)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_scope"
        assert "not granted to this client" in refused.json()["error_description"]


async def test_unknown_client_and_wrong_secret_get_the_same_answer(
    client: httpx.AsyncClient, service: dict[str, Any]
) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    answers = [
        await by_basic(client, cid, secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        await by_basic(client, "mgc_" + "x" * 22, secret),
        await by_basic(client, "x" * 5000, secret),
        await by_post(client, cid, "wrong"),
        await by_post(client, "mgc_unknown", secret),
        await by_post(client, cid, ""),
        await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": cid}),  # no secret at all
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.json() == BAD_CLIENT
        # RFC 6749 5.2.
        assert answer.headers["www-authenticate"].startswith('Basic realm="modelgate"')
        assert answer.headers["cache-control"] == "no-store"
        assert secret not in answer.text


@pytest.mark.parametrize(
    ("headers", "form", "status", "error"),
    [
        ({}, {}, 401, "invalid_client"),  # no client authentication at all
        ({"Authorization": "Basic !!!"}, {}, 401, "invalid_client"),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, {}, 401, "invalid_client"),
        ({"Authorization": "Basic " + base64.b64encode(b":").decode()}, {}, 401, "invalid_client"),  # empty id
    ],
)
async def test_client_authentication_problems(
    client: httpx.AsyncClient, headers: dict[str, str], form: dict[str, str], status: int, error: str
) -> None:
    response = await client.post("/token", data={**CLIENT_CREDENTIALS, **form}, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_one_authentication_method_per_request(client: httpx.AsyncClient, service: dict[str, Any]) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    both = await client.post(
        "/token", data={**CLIENT_CREDENTIALS, "client_id": cid, "client_secret": secret}, headers=basic(cid, secret)
    )
    other_id = await client.post(
        "/token", data={**CLIENT_CREDENTIALS, "client_id": "mgc_other"}, headers=basic(cid, secret)
    )
    for response in (both, other_id):
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        assert "one client authentication method" in response.json()["error_description"]
        assert secret not in response.text
    # RFC 6749 3.2.1: the same client_id in the form beside Basic is no second method.
    same_id = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": cid}, headers=basic(cid, secret))
    assert same_id.status_code == 200, same_id.text
    repeated = await client.post(
        "/token",
        content=f"grant_type=client_credentials&client_id={cid}&client_id={cid}&client_secret={secret}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    two_headers = await client.post(
        "/token",
        data=CLIENT_CREDENTIALS,
        headers=[("Authorization", basic(cid, secret)["Authorization"])] * 2,  # type: ignore[arg-type]
    )
    assert two_headers.status_code == 400 and two_headers.json()["error"] == "invalid_request"


async def test_service_accounts_use_only_client_credentials(client: httpx.AsyncClient, service: dict[str, Any]) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    await sign_up(client)
    as_password = await client.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}, headers=basic(cid, secret)
    )
    assert as_password.status_code == 400
    assert as_password.json()["error"] == "unauthorized_client"
    refresh = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": cid, "client_secret": secret}
    )
    assert refresh.json()["error"] == "unauthorized_client"
    # The secret is checked first: a wrong one is invalid_client, as anywhere.
    wrong = await client.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}, headers=basic(cid, "x")
    )
    assert (wrong.status_code, wrong.json()) == (401, BAD_CLIENT)


async def test_public_clients_naming_themselves_still_log_in(client: httpx.AsyncClient) -> None:
    """Swagger UI sends its client id (Basic with an empty secret, or a form field): not a service account."""
    await sign_up(client)
    assert (await login(client, client_id="modelgate-docs")).status_code == 200
    docs_basic = {"Authorization": "Basic " + base64.b64encode(b"modelgate-docs:").decode()}
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    assert (await client.post("/token", data=form, headers=docs_basic)).status_code == 200
    empty_basic = {"Authorization": "Basic " + base64.b64encode(b":").decode()}
    assert (await client.post("/token", data=form, headers=empty_basic)).status_code == 200


async def test_disable_refuses_the_grant_and_enable_restores(
    client: httpx.AsyncClient, admin_token: str, service: dict[str, Any]
) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    disabled = await client.patch(f"/clients/{cid}", headers=bearer(admin_token), json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    refused = await by_basic(client, cid, secret)
    assert refused.status_code == 401
    assert refused.json() == {"error": "invalid_client", "error_description": "this client is disabled"}
    # Only the secret's holder learns that it is disabled.
    assert (await by_basic(client, cid, "wrong")).json() == BAD_CLIENT
    await client.patch(f"/clients/{cid}", headers=bearer(admin_token), json={"disabled": False})
    assert (await by_basic(client, cid, secret)).status_code == 200


async def test_rename_and_change_scopes(client: httpx.AsyncClient, admin_token: str, service: dict[str, Any]) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    changed = await client.patch(
        f"/clients/{cid}", headers=bearer(admin_token), json={"name": "renamed", "scopes": ["models:read"]}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["scopes"]) == ("renamed", ["models:read"])
    assert (await by_basic(client, cid, secret)).json()["scope"] == "models:read"
    bad = await client.patch(f"/clients/{cid}", headers=bearer(admin_token), json={"scopes": ["x"]})
    assert bad.status_code == 422


async def rotate(client: httpx.AsyncClient, admin_token: str, cid: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/clients/{cid}/rotate-secret", headers=bearer(admin_token), json=body or None)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


async def test_rotation_keeps_the_old_secret_for_the_grace_period(
    client: httpx.AsyncClient, admin_token: str, service: dict[str, Any], app: FastAPI
) -> None:
    cid, old = service["client_id"], service["client_secret"]
    before = datetime.now(UTC)
    rotated = await rotate(client, admin_token, cid)
    new = rotated["client_secret"]
    assert new != old and len(new) >= 43
    # The default grace: a day.
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert before + timedelta(days=1) <= expires <= datetime.now(UTC) + timedelta(days=1)
    assert (await by_basic(client, cid, old)).status_code == 200
    assert (await by_post(client, cid, new)).status_code == 200
    # The grace period ends (aged in the database, not by a clock mock): only the new one works.
    async with app.state.auth.sessions() as session:
        await session.execute(
            update(Client).where(Client.id == cid).values(previous_secret_expires_at=datetime.now(UTC))
        )
        await session.commit()
    assert (await by_basic(client, cid, old)).json() == BAD_CLIENT
    assert (await by_basic(client, cid, new)).status_code == 200


async def test_rotation_without_grace_and_rotating_twice(
    client: httpx.AsyncClient, admin_token: str, service: dict[str, Any]
) -> None:
    cid, first = service["client_id"], service["client_secret"]
    second = (await rotate(client, admin_token, cid, grace_seconds=3600))["client_secret"]
    third = (await rotate(client, admin_token, cid, grace_seconds=3600))["client_secret"]
    # One previous secret at most: the first stopped at the second rotation.
    assert (await by_basic(client, cid, first)).status_code == 401
    assert (await by_basic(client, cid, second)).status_code == 200
    leaked = await rotate(client, admin_token, cid, grace_seconds=0)
    assert leaked["previous_secret_expires_at"] is None
    for gone in (second, third):
        assert (await by_basic(client, cid, gone)).status_code == 401
    assert (await by_basic(client, cid, leaked["client_secret"])).status_code == 200
    too_long = await client.post(
        f"/clients/{cid}/rotate-secret", headers=bearer(admin_token), json={"grace_seconds": 31 * 86400}
    )
    assert too_long.status_code == 422


async def test_delete_removes_the_client(client: httpx.AsyncClient, admin_token: str, service: dict[str, Any]) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    assert (await by_basic(client, cid, secret)).status_code == 200
    assert (await client.delete(f"/clients/{cid}", headers=bearer(admin_token))).status_code == 204
    assert (await by_basic(client, cid, secret)).json() == BAD_CLIENT
    assert (await client.get(f"/clients/{cid}", headers=bearer(admin_token))).status_code == 404
    assert (await client.delete(f"/clients/{cid}", headers=bearer(admin_token))).status_code == 404


async def test_every_client_authentication_is_in_the_login_history(
    client: httpx.AsyncClient, admin_token: str, service: dict[str, Any], app: FastAPI
) -> None:
    cid, secret = service["client_id"], service["client_secret"]
    await by_basic(client, cid, secret, scope="predict")
    await by_post(client, cid, "wrong")
    await by_basic(client, cid, secret, scope="admin")
    await by_basic(client, "mgc_unknown", secret)
    history = await client.get(f"/clients/{cid}/logins", headers=bearer(admin_token))
    assert history.status_code == 200
    rows = [(r["event"], r["client_id"], r["grant_type"], r["success"], r["reason"]) for r in history.json()["items"]]
    assert rows == [
        ("token", cid, "client_credentials", False, "invalid_scope"),
        ("token", cid, "client_credentials", False, "wrong_client_secret"),
        ("token", cid, "client_credentials", True, "ok"),
    ]
    assert all(r["username"] is None and r["client_ip"] == "127.0.0.1" for r in history.json()["items"])
    async with app.state.auth.sessions() as session:
        unknown = list(await session.scalars(select(Login).where(Login.reason == "unknown_client")))
    # The id tried is not stored: it may be a secret pasted into the wrong field.
    assert [(r.client_id, r.user_id, r.success) for r in unknown] == [(None, None, False)]
    assert secret not in str(history.json())


async def test_discovery_advertises_the_grant_and_methods(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert "client_credentials" in document["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(document["token_endpoint_auth_methods_supported"])
    assert "client_id" in document["claims_supported"]


async def test_a_service_accounts_token_cannot_act_as_a_user(client: httpx.AsyncClient, admin_token: str) -> None:
    # Even with the admin scope (which the gateway's admin API honours), auth's routes act for a person.
    made = await create(client, admin_token, scopes=["admin"])
    token = (await by_basic(client, made["client_id"], made["client_secret"])).json()["access_token"]
    for path in ("/users/me", "/clients"):
        response = await client.get(path, headers=bearer(token))
        assert response.status_code == 403, path
        assert "service account" in response.json()["detail"]


# -- revocations reach the gateway's Redis ----------------------------------------------------------


@pytest.fixture
def settings_overrides(redis_url: str, prefix: str) -> dict[str, Any]:
    return {"redis_url": redis_url, "redis_key_prefix": prefix}


async def test_disable_delete_and_narrowing_revoke_the_clients_tokens(
    client: httpx.AsyncClient, admin_token: str, store: redis.Redis, prefix: str
) -> None:
    actions: list[tuple[str, dict[str, Any] | None]] = [
        ("PATCH", {"disabled": True}),
        ("PATCH", {"scopes": ["predict"]}),
        ("DELETE", None),
    ]
    for method, body in actions:
        made = await create(client, admin_token)
        token = (await by_basic(client, made["client_id"], made["client_secret"])).json()["access_token"]
        assert not revoked(store, prefix, token)
        response = await client.request(method, f"/clients/{made['client_id']}", headers=bearer(admin_token), json=body)
        assert response.status_code in (200, 204), response.text
        assert revoked(store, prefix, token), (method, body)
    # A rename, or enabling, revokes nothing.
    made = await create(client, admin_token)
    token = (await by_basic(client, made["client_id"], made["client_secret"])).json()["access_token"]
    await client.patch(f"/clients/{made['client_id']}", headers=bearer(admin_token), json={"name": "other"})
    assert not revoked(store, prefix, token)


async def test_deleting_the_owner_deletes_and_revokes_their_clients(
    client: httpx.AsyncClient, admin_token: str, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client, "owner")
    made = await create(client, admin_token, owner_id=user["id"])
    token = (await by_basic(client, made["client_id"], made["client_secret"])).json()["access_token"]
    assert (await client.delete(f"/users/{user['id']}", headers=bearer(admin_token))).status_code == 204
    assert revoked(store, prefix, token)
    assert (await client.get(f"/clients/{made['client_id']}", headers=bearer(admin_token))).status_code == 404
    assert (await by_basic(client, made["client_id"], made["client_secret"])).json() == BAD_CLIENT
