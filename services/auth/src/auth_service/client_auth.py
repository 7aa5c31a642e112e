"""Client authentication at the token endpoint (RFC 6749 2.3.1): which credentials a request
presents, by HTTP Basic (``client_secret_basic``) or form fields (``client_secret_post``), and
whether they are a service account's.

Unknown id and wrong secret take the same path to the same answer: nothing tells a caller
which client ids exist. Only a caller holding the right secret learns that a client is disabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from modelgate_shared.oauth_params import MalformedCredentials, basic_credentials
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Client
from .oauth_errors import OAuthError, invalid_client
from .service_accounts import client_by_id, secret_matches

BASIC = "client_secret_basic"
POST = "client_secret_post"
METHODS = (BASIC, POST)
BAD_CLIENT_CREDENTIALS = "client authentication failed"


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    # Never logged, stored or echoed.
    client_secret: str
    method: str


def presented_credentials(
    authorization: Sequence[str], form_client_id: str | None, form_client_secret: str | None
) -> ClientCredentials | None:
    """The client credentials of a token request, None when it presents none.

    ``authorization``: every Authorization header. A Basic header with an empty id (what Swagger
    UI sends for a client without secret) presents nothing. RFC 6749 2.3: one method per request,
    so Basic plus a form ``client_secret`` (or another form ``client_id``) is ``invalid_request``.
    """
    if len(authorization) > 1:
        raise OAuthError("invalid_request", "exactly one Authorization header is allowed")
    basic = None
    if authorization:
        try:
            basic = basic_credentials(authorization[0])
        except MalformedCredentials as exc:
            raise invalid_client(str(exc), "malformed_client_credentials") from None
    if basic is not None and basic[0]:
        if form_client_secret is not None or (form_client_id and form_client_id != basic[0]):
            raise OAuthError(
                "invalid_request",
                "use one client authentication method: HTTP Basic, or the client_id and client_secret form fields",
            )
        return ClientCredentials(basic[0], basic[1], BASIC)
    if form_client_id:
        return ClientCredentials(form_client_id, form_client_secret or "", POST)
    return None


async def authenticate_client(session: AsyncSession, credentials: ClientCredentials, now: datetime) -> Client:
    """The enabled client the credentials prove, else ``invalid_client`` (401)."""
    client = await client_by_id(session, credentials.client_id)
    if not secret_matches(client, credentials.client_secret, now):
        reason = "unknown_client" if client is None else "wrong_client_secret"
        raise invalid_client(BAD_CLIENT_CREDENTIALS, reason, client.id if client else None)
    assert client is not None
    if client.disabled:
        raise invalid_client("this client is disabled", "client_disabled", client.id)
    return client
