"""RFC 6749 section 5.2 error responses for the token and revocation endpoints."""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import JSONResponse

from .passwords import HashingBusy

# Token responses carry credentials: never let a cache keep them (RFC 6749 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 error; ``reason``, ``user_id`` and ``client_id`` feed the login history, not the client."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        reason: str | None = None,
        user_id: uuid.UUID | None = None,
        client_id: str | None = None,
        status_code: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.reason = reason or error
        self.user_id = user_id
        self.client_id = client_id
        self.status_code = status_code
        self.headers = headers or {}


def invalid_grant(description: str, reason: str, user_id: uuid.UUID | None = None) -> OAuthError:
    return OAuthError("invalid_grant", description, reason=reason, user_id=user_id)


# RFC 6749 5.2: a failed client authentication is a 401 naming the scheme to use. Sent whichever
# method the client tried (RFC 9110 requires the challenge on every 401).
CLIENT_CHALLENGE = {"WWW-Authenticate": 'Basic realm="modelgate", charset="UTF-8"'}


def invalid_client(description: str, reason: str, client_id: str | None = None) -> OAuthError:
    return OAuthError(
        "invalid_client", description, reason=reason, client_id=client_id, status_code=401, headers=CLIENT_CHALLENGE
    )


async def oauth_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OAuthError)
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status_code,
        headers={**NO_STORE, **exc.headers},
    )


def temporarily_unavailable(busy: HashingBusy) -> OAuthError:
    return OAuthError(
        "temporarily_unavailable",
        str(busy),
        reason="hashing_busy",
        status_code=503,
        headers={"Retry-After": str(busy.retry_after)},
    )


async def hashing_busy_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Sign-up and password changes (routes outside RFC 6749) when hashing is saturated."""
    assert isinstance(exc, HashingBusy)
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})
