"""``POST /token`` (password, refresh_token and client_credentials grants) and ``POST /revoke`` (RFC 7009)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse
from modelgate_shared.oauth_params import (
    CLIENT_CREDENTIALS,
    is_service_account_id,
    repeated_parameter,
    repeated_parameter_error,
)

from ..client_auth import presented_credentials
from ..deps import DbSession, Ring, State
from ..grants import (
    Grant,
    client_credentials_grant,
    password_grant,
    refresh_grant,
    refuse_service_account,
    revoke_refresh_token,
)
from ..login_history import login_attempt, settle
from ..oauth_errors import NO_STORE, OAuthError, invalid_client
from ..schemas import TokenResponse

log = logging.getLogger(__name__)
router = APIRouter(tags=["oauth2"])

OptionalForm = Annotated[str | None, Form()]
GRANT_TYPES = ("password", "refresh_token", CLIENT_CREDENTIALS)


def _require(value: str | None, name: str) -> str:
    if not value:
        raise OAuthError("invalid_request", f"missing form field: {name}")
    return value


async def _refuse_repeated(request: Request) -> None:
    """RFC 6749 3.2: no parameter twice (FastAPI would take the last copy, a parser in front the
    first). The form is the one FastAPI has parsed already, cached on the request."""
    repeated = repeated_parameter(name for name, _ in (await request.form()).multi_items())
    if repeated is not None:
        raise OAuthError("invalid_request", repeated_parameter_error(repeated))


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="OAuth2 token endpoint (password, refresh_token and client_credentials grants, form-encoded)",
    description=(
        "Service accounts use the client_credentials grant and authenticate by HTTP Basic "
        "(client_secret_basic) or the client_id and client_secret form fields (client_secret_post); "
        "their token has no refresh token."
    ),
    responses={
        400: {"description": "RFC 6749 error: invalid_request, invalid_grant, invalid_scope, unauthorized_client, ..."},
        401: {"description": "RFC 6749 invalid_client: client authentication failed (WWW-Authenticate: Basic)"},
    },
)
async def token(
    request: Request,
    state: State,
    ring: Ring,
    session: DbSession,
    grant_type: OptionalForm = None,
    username: OptionalForm = None,
    password: OptionalForm = None,
    refresh_token: OptionalForm = None,
    scope: OptionalForm = None,
    client_id: OptionalForm = None,
    client_secret: OptionalForm = None,
) -> JSONResponse:
    # Every field is optional at the framework level so that a missing one gets an RFC 6749
    # invalid_request body instead of FastAPI's 422.
    login = login_attempt(request, state.trusted_proxies, grant_type)
    now = datetime.now(UTC)
    grant: Grant | None = None
    failure: OAuthError | None = None
    try:
        await _refuse_repeated(request)
        grant_type = _require(grant_type, "grant_type")
        if grant_type not in GRANT_TYPES:
            raise OAuthError(
                "unsupported_grant_type",
                f"grant_type {grant_type[:64]!r} is not supported; use {', '.join(GRANT_TYPES)}",
            )
        credentials = presented_credentials(request.headers.getlist("authorization"), client_id, client_secret)
        if grant_type == CLIENT_CREDENTIALS:
            if credentials is None:
                raise invalid_client(
                    "client authentication required: HTTP Basic, or the client_id and client_secret form fields",
                    "no_client_credentials",
                )
            grant = await client_credentials_grant(
                session, ring, state.policy, credentials=credentials, scope=scope, now=now
            )
        elif credentials is not None and is_service_account_id(credentials.client_id):
            # Any other client id is a public client naming itself (RFC 6749 3.2.1): not authenticated.
            await refuse_service_account(session, credentials, now)
        elif grant_type == "password":
            grant = await password_grant(
                session,
                state.hasher,
                ring,
                state.policy,
                username=_require(username, "username"),
                password=_require(password, "password"),
                scope=scope,
                now=now,
            )
        else:
            token = _require(refresh_token, "refresh_token")
            grant = await refresh_grant(session, ring, state.policy, refresh_token=token, scope=scope, now=now)
    except OAuthError as exc:
        failure = exc

    # Every attempt is recorded, in the same transaction as its effects (a reuse-triggered
    # family revocation is committed even though the client gets an error).
    if grant is not None:
        user_id = grant.user.id if grant.user is not None else None
        client = grant.client.id if grant.client is not None else None
        await settle(session, login, user_id=user_id, client_id=client, success=True, reason="ok")
    else:
        assert failure is not None
        await settle(
            session, login, user_id=failure.user_id, client_id=failure.client_id, success=False, reason=failure.reason
        )
    session.add(login)
    await session.commit()
    # A reused refresh token revoked its family: that session's access tokens end too.
    await state.revocations.publish(session)
    if failure is not None:
        log.info("token request refused: %s", failure.reason)
        raise failure
    assert grant is not None
    body = TokenResponse(
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token,
        scope=" ".join(grant.scopes),
    )
    # No refresh_token member at all for a service account (RFC 6749 4.4.3), rather than a null.
    return JSONResponse(body.model_dump(exclude_none=True), headers=NO_STORE)


@router.post("/revoke", status_code=200, summary="RFC 7009 token revocation (refresh tokens)")
async def revoke(
    request: Request, session: DbSession, state: State, token: OptionalForm = None, token_type_hint: OptionalForm = None
) -> Response:
    await _refuse_repeated(request)
    token = _require(token, "token")
    # Access tokens are self-contained JWTs that expire within minutes; RFC 7009 2.2 lets
    # us answer 200 for them (and for unknown tokens) without doing anything. A refresh
    # token's session ends whole: its access tokens (sid = the family) are refused at the gateway.
    if token_type_hint in (None, "refresh_token") or "." not in token:
        await revoke_refresh_token(session, token, datetime.now(UTC))
        await session.commit()
        await state.revocations.publish(session)
    return Response(status_code=200, headers=NO_STORE)
