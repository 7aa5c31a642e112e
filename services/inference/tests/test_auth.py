"""Every protected route verifies the bearer token itself (RFC 6750 401/403)."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from inference_service.settings import InferenceSettings
from jose import jwt
from modelgate_shared.testing import TokenSigner

from .conftest import PIMA_ROW, serve

PREDICT = ("POST", "/v1/models/diabetes/predict", {"instances": [PIMA_ROW]})
V2_INFER = (
    "POST",
    "/v2/models/diabetes/infer",
    {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP64", "data": list(PIMA_ROW.values())}]},
)
PROTECTED = [
    ("GET", "/v1/models", None, "models:read"),
    ("GET", "/v1/models/diabetes", None, "models:read"),
    ("GET", "/v1/models/diabetes/versions/1", None, "models:read"),
    (*PREDICT, "predict"),
    ("GET", "/v2/models/diabetes", None, "models:read"),
    ("GET", "/v2/models/diabetes/ready", None, "models:read"),
    (*V2_INFER, "predict"),
]


async def call(client: httpx.AsyncClient, method: str, path: str, body: object, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "scope"), PROTECTED, ids=[f"{m} {p}" for m, p, *_ in PROTECTED])
async def test_route_needs_token_and_its_scope(
    client: httpx.AsyncClient, signer: TokenSigner, method: str, path: str, body: object, scope: str
) -> None:
    missing = await call(client, method, path, body, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    other_scope = "predict" if scope == "models:read" else "models:read"
    forbidden = await call(client, method, path, body, signer.token(other_scope))
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    allowed = await call(client, method, path, body, signer.token(scope))
    assert allowed.status_code == 200, allowed.text


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256_with_public_key(signer: TokenSigner, jwks_path: Path) -> str:
    # The classic confusion attack: HMAC "signed" with the published public key as the secret.
    public = json.loads(jwks_path.read_text())["keys"][0]
    claims = jwt.get_unverified_claims(signer.token())
    return jwt.encode(claims, json.dumps(public), algorithm="HS256", headers={"kid": signer.kid})


def _with_claims_swapped(token: str, **claims: object) -> str:
    header, _, signature = token.split(".")
    return ".".join([header, _b64({**jwt.get_unverified_claims(token), **claims}), signature])


BAD_TOKENS = {
    "expired": lambda s, _: s.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    "not-yet-valid": lambda s, _: s.token(nbf=int(time.time()) + 3600),
    "wrong-audience": lambda s, _: s.token(aud="someone-else"),
    "wrong-issuer": lambda s, _: s.token(iss="http://evil.test/auth"),
    "missing-sub": lambda s, _: s.token(sub=None),
    "missing-jti": lambda s, _: s.token(jti=None),
    "unknown-kid": lambda s, _: s.token(headers={"kid": "no-such-key"}),
    "foreign-key": lambda s, _: TokenSigner(issuer=s.issuer, audience=s.audience).token(headers={"kid": s.kid}),
    "alg-none": lambda s, _: f"{_b64({'alg': 'none', 'kid': s.kid})}.{_b64(jwt.get_unverified_claims(s.token()))}.",
    "hs256-public-key": _hs256_with_public_key,
    "tampered-payload": lambda s, _: _with_claims_swapped(s.token(), scope="admin predict"),
    "garbage": lambda s, _: "not.a.jwt",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_token_is_401_invalid_token(
    client: httpx.AsyncClient, signer: TokenSigner, jwks_path: Path, kind: str
) -> None:
    token = BAD_TOKENS[kind](signer, jwks_path)
    for method, path, body in (PREDICT, V2_INFER):
        response = await call(client, method, path, body, token)
        assert response.status_code == 401, (path, response.text)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_v2_auth_errors_use_the_v2_error_body(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await call(client, *V2_INFER, None)
    assert response.status_code == 401
    assert response.json() == {"error": "missing bearer token"}
    forbidden = await call(client, *V2_INFER, signer.token("models:read"))
    assert forbidden.status_code == 403
    assert "predict" in forbidden.json()["error"]


async def test_unauthenticated_caller_cannot_probe_model_names(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/secret-model/predict", json={"instances": [PIMA_ROW]})
    assert response.status_code == 401


async def test_keys_from_auths_jwks_url(
    make_settings: Callable[..., InferenceSettings], signer: TokenSigner, jwks_path: Path, file_server: tuple[str, Path]
) -> None:
    base, root = file_server
    shutil.copy(jwks_path, root / "jwks.json")
    settings = make_settings(public_keys=None, jwks_url=f"{base}/jwks.json")
    async with serve(settings) as http:
        assert (await http.get("/readyz")).status_code == 200
        response = await call(http, *PREDICT, signer.token("predict"))
        assert response.status_code == 200, response.text
