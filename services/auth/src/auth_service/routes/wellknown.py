"""Published metadata: the JWKS and the OpenID/RFC 8414 discovery document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from modelgate_shared.scopes import BASE_SCOPES

from ..client_auth import METHODS
from ..deps import Ring, State

router = APIRouter(prefix="/.well-known", tags=["discovery"])

# Short: after a rotation, verifiers that cache by HTTP rules see the new key soon.
JWKS_CACHE = {"Cache-Control": "public, max-age=60"}


@router.get("/jwks.json", summary="Public keys of every signing key (kid = RFC 7638 thumbprint)")
async def jwks(ring: Ring) -> JSONResponse:
    return JSONResponse(ring.jwks(), headers=JWKS_CACHE)


def discovery_document(issuer: str, algorithms: list[str]) -> dict[str, Any]:
    # The issuer is auth's public URL (through the gateway), so every endpoint hangs off it.
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "token_endpoint": f"{base}/token",
        "revocation_endpoint": f"{base}/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["password", "refresh_token", "client_credentials"],
        "response_types_supported": ["token"],
        # Model scopes (predict:<model>) are open-ended, so not listed.
        "scopes_supported": list(BASE_SCOPES),
        # "none" for people (password, refresh_token), the other two for service accounts.
        "token_endpoint_auth_methods_supported": ["none", *METHODS],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": algorithms,
        "token_endpoint_auth_signing_alg_values_supported": algorithms,
        "subject_types_supported": ["public"],
        "claims_supported": [
            "iss",
            "aud",
            "sub",
            "preferred_username",
            "scope",
            "iat",
            "nbf",
            "exp",
            "jti",
            "sid",
            "client_id",
        ],
    }


@router.get("/openid-configuration", summary="Discovery metadata (OpenID Connect / RFC 8414 fields)")
@router.get("/oauth-authorization-server", include_in_schema=False)
async def openid_configuration(state: State, ring: Ring) -> dict[str, Any]:
    algorithms = sorted({k.algorithm for k in ring.keys})
    return discovery_document(state.settings.issuer, algorithms)
