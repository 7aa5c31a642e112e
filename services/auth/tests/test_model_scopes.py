"""Model scopes (``predict:<model>``): an admin grants them to users and service accounts like any
other scope, tokens carry them, anything else named ``predict:...`` is refused, and withdrawing one
ends the tokens that carry it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from auth_service.cli import main
from jose import jwt
from modelgate_shared.db import make_engine
from modelgate_shared.scopes import MAX_SCOPE_LENGTH, MODEL_NAME_MAX_LENGTH, model_scope
from modelgate_shared.tokens import TokenVerifier
from sqlalchemy import text

from .conftest import PASSWORD, bearer, login, revoked, sign_up, tokens_for
from .test_service_accounts import by_basic, create

CHURN = model_scope("churn")
# The longest name there is: the stored scope arrays must hold it (migration 0006).
LONGEST = model_scope("m" * MODEL_NAME_MAX_LENGTH)
BAD_SCOPES = [
    "predict:",
    "predict:../x",
    "predict:a b",
    "predict:a/b",
    "predict:.hidden",
    "predict:" + "m" * (MODEL_NAME_MAX_LENGTH + 1),
    "predict :churn",
    "Predict:churn",
    "predict:churn:v2",
]


@pytest.fixture
def settings_overrides(redis_url: str, prefix: str) -> dict[str, Any]:
    return {"redis_url": redis_url, "redis_key_prefix": prefix}


async def grant_user(client: httpx.AsyncClient, admin_token: str, user_id: str, scopes: list[str]) -> httpx.Response:
    return await client.patch(f"/users/{user_id}", headers=bearer(admin_token), json={"scopes": scopes})


async def test_a_user_granted_a_model_scope_gets_it_in_the_token(
    client: httpx.AsyncClient, admin_token: str, verifier: TokenVerifier
) -> None:
    user = await sign_up(client)
    granted = await grant_user(client, admin_token, user["id"], [CHURN, "models:read", "predict"])
    assert granted.status_code == 200, granted.text
    # The fixed scopes first, then model scopes: a stable order however they were sent.
    assert granted.json()["scopes"] == ["predict", "models:read", CHURN]
    assert (await client.get(f"/users/{user['id']}", headers=bearer(admin_token))).json()["scopes"] == [
        "predict",
        "models:read",
        CHURN,
    ]

    # Asked for: only that scope.
    asked = await login(client, scope=CHURN)
    assert asked.status_code == 200, asked.text
    assert asked.json()["scope"] == CHURN
    assert jwt.get_unverified_claims(asked.json()["access_token"])["scope"] == CHURN
    assert (await verifier.verify(asked.json()["access_token"])).scopes == {CHURN}

    # Not asked for: everything held, in the same order; a refresh may narrow to the model scope.
    issued = await tokens_for(client)
    assert issued["scope"] == f"predict models:read {CHURN}"
    assert jwt.get_unverified_claims(issued["access_token"])["scope"] == f"predict models:read {CHURN}"
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"], "scope": CHURN}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert jwt.get_unverified_claims(refreshed.json()["access_token"])["scope"] == CHURN


async def test_a_service_account_granted_a_model_scope_gets_it_in_the_token(
    client: httpx.AsyncClient, admin_token: str, verifier: TokenVerifier
) -> None:
    made = await create(client, admin_token, scopes=[CHURN, "predict"])
    assert made["scopes"] == ["predict", CHURN]
    cid, secret = made["client_id"], made["client_secret"]

    asked = await by_basic(client, cid, secret, scope=CHURN)
    assert asked.status_code == 200, asked.text
    assert asked.json()["scope"] == CHURN
    claims = jwt.get_unverified_claims(asked.json()["access_token"])
    assert (claims["scope"], claims["client_id"]) == (CHURN, cid)
    assert (await verifier.verify(asked.json()["access_token"])).scopes == {CHURN}
    assert (await by_basic(client, cid, secret)).json()["scope"] == f"predict {CHURN}"

    # PATCH adds another model's scope like any other.
    fraud = model_scope("fraud-v2.1")
    changed = await client.patch(f"/clients/{cid}", headers=bearer(admin_token), json={"scopes": [fraud, CHURN]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["scopes"] == [CHURN, fraud]
    both = await by_basic(client, cid, secret, scope=f"{fraud} {CHURN}")
    assert jwt.get_unverified_claims(both.json()["access_token"])["scope"] == f"{CHURN} {fraud}"


async def test_the_longest_model_name_is_stored_and_issued(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    assert (await grant_user(client, admin_token, user["id"], [LONGEST])).status_code == 200
    assert (await tokens_for(client))["scope"] == LONGEST
    made = await create(client, admin_token, scopes=[LONGEST])
    assert (await by_basic(client, made["client_id"], made["client_secret"])).json()["scope"] == LONGEST


async def test_malformed_model_scopes_are_a_422_naming_the_value(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    made = await create(client, admin_token)
    for scope in BAD_SCOPES:
        for method, path, body in (
            ("PATCH", f"/users/{user['id']}", {"scopes": ["predict", scope]}),
            ("POST", "/clients", {"name": "job", "scopes": [scope]}),
            ("PATCH", f"/clients/{made['client_id']}", {"scopes": [scope]}),
        ):
            response = await client.request(method, path, headers=bearer(admin_token), json=body)
            assert response.status_code == 422, (method, path, scope, response.text)
            if len(scope) <= MAX_SCOPE_LENGTH:  # a longer one fails the length check first
                assert f"unknown scope(s) {scope};" in response.text, (scope, response.text)
    # Nothing was stored.
    assert (await client.get(f"/users/{user['id']}", headers=bearer(admin_token))).json()["scopes"] == [
        "predict",
        "models:read",
    ]


async def test_a_huge_scope_is_refused_without_being_echoed(client: httpx.AsyncClient, admin_token: str) -> None:
    user = await sign_up(client)
    huge = "predict:" + "x" * 100_000
    many = [f"predict:{'y' * 60}/{i}" for i in range(32)]
    for scopes in ([huge], many):
        response = await grant_user(client, admin_token, user["id"], scopes)
        assert response.status_code == 422, response.text[:300]
        assert len(response.text) < 4_000
    # A /token scope parameter of any size: invalid_scope, cut short.
    refused = await login(client, scope=huge)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"
    assert len(refused.text) < 1_000


async def test_a_model_scope_not_held_is_invalid_scope(client: httpx.AsyncClient, admin_token: str) -> None:
    await sign_up(client)
    refused = await login(client, scope=CHURN)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_scope"
    assert CHURN in refused.json()["error_description"]
    # Plain predict does not stand in for a model's scope, nor one model's for another's.
    made = await create(client, admin_token, scopes=["predict", model_scope("fraud")])
    for scope in (CHURN, f"predict {CHURN}", "predict:*"):
        response = await by_basic(client, made["client_id"], made["client_secret"], scope=scope)
        assert response.status_code == 400, (scope, response.text)
        assert response.json()["error"] == "invalid_scope", scope


async def test_withdrawing_a_model_scope_revokes_and_does_not_survive_a_refresh(
    client: httpx.AsyncClient, admin_token: str, store: redis.Redis, prefix: str
) -> None:
    user = await sign_up(client)
    assert (await grant_user(client, admin_token, user["id"], ["predict", CHURN])).status_code == 200
    issued = await tokens_for(client)
    assert issued["scope"] == f"predict {CHURN}"
    # Adding another model's scope takes nothing away...
    assert (await grant_user(client, admin_token, user["id"], ["predict", CHURN, model_scope("x")])).status_code == 200
    assert not revoked(store, prefix, issued["access_token"])
    # ...withdrawing one ends the tokens that carry it, and a refresh no longer carries it.
    assert (await grant_user(client, admin_token, user["id"], ["predict"])).status_code == 200
    assert revoked(store, prefix, issued["access_token"])
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "predict"
    assert (await login(client, scope=CHURN)).json()["error"] == "invalid_scope"

    made = await create(client, admin_token, scopes=["predict", CHURN])
    cid, secret = made["client_id"], made["client_secret"]
    token = (await by_basic(client, cid, secret)).json()["access_token"]
    assert not revoked(store, prefix, token)
    narrowed = await client.patch(f"/clients/{cid}", headers=bearer(admin_token), json={"scopes": ["predict"]})
    assert narrowed.status_code == 200, narrowed.text
    assert revoked(store, prefix, token)
    assert (await by_basic(client, cid, secret, scope=CHURN)).json()["error"] == "invalid_scope"


async def test_discovery_lists_the_fixed_scopes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["scopes_supported"] == ["predict", "models:read", "admin"]


async def test_the_bootstrap_admin_holds_no_model_scope(client: httpx.AsyncClient, admin_token: str) -> None:
    assert jwt.get_unverified_claims(admin_token)["scope"] == "predict models:read admin"


def test_cli_clients_create_accepts_model_scopes(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    monkeypatch.setenv("MODELGATE_AUTH_BCRYPT_ROUNDS", "4")
    assert main(["migrate"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    assert main(["create-user", "alice", "--email", "alice@example.com", "--password-stdin"]) == 0
    capsys.readouterr()

    assert main(["clients", "create", "job", "--owner", "alice", "--scope", CHURN, "--scope", "predict"]) == 0
    out = capsys.readouterr().out
    assert f"scopes predict {CHURN}" in out
    client_id = out.split()[2]

    async def stored() -> list[str]:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                scopes = await conn.scalar(text("SELECT scopes FROM clients WHERE id = :id"), {"id": client_id})
                return list(scopes)
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == ["predict", CHURN]

    for scope in ("predict:../x", "predict:", "root", "predict:" + "x" * 10_000):
        with pytest.raises(SystemExit) as exc:
            main(["clients", "create", "job", "--owner", "alice", "--scope", scope])
        assert exc.value.code == 2, scope
        err = capsys.readouterr().err
        assert f"unknown scope {scope[:80]!r}" in err, (scope, err)
        assert len(err) < 2_000
