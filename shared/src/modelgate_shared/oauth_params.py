"""RFC 6749 request parameters and client credentials: the rules auth's token endpoint and the
gateway's login guard both apply.

RFC 6749 3.1/3.2: "Request and response parameters MUST NOT be included more than once."
With a parameter twice, two parsers can each pick a different copy (the gateway's guard the
first ``username``, auth the last): such a request is refused, by both, as ``invalid_request``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from urllib.parse import unquote_plus


def repeated_parameter(names: Iterable[str]) -> str | None:
    """The first parameter name that occurs more than once, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def repeated_parameter_error(name: str) -> str:
    """The ``error_description`` both services give (the name cut short: it is client input)."""
    return f"parameter {name[:64]!r} is repeated; RFC 6749 parameters must not be included more than once"


class MalformedCredentials(ValueError):
    """An ``Authorization: Basic`` header that does not decode to ``client_id:client_secret``."""


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """RFC 6749 2.3.1 client credentials from one ``Authorization`` header value: ``(client_id,
    client_secret)``, None for another scheme. Auth authenticates, and the gateway's login guard
    keys on, what this returns, so the two can never read one header differently.

    Base64 of ``id:secret`` (RFC 7617, UTF-8), each part form-urlencoded first (RFC 6749 2.3.1:
    a ``:`` or ``%`` in an id arrives encoded). MalformedCredentials when it is not that.
    """
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise MalformedCredentials("the Basic credentials are not base64 of UTF-8 text") from None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        raise MalformedCredentials("the Basic credentials have no ':' between client id and secret")
    try:
        return unquote_plus(client_id, errors="strict"), unquote_plus(client_secret, errors="strict")
    except UnicodeDecodeError:
        raise MalformedCredentials("the Basic credentials are not form-urlencoded UTF-8") from None


# Every service account's client id starts so. The token endpoint authenticates any client id
# for the client_credentials grant, but for the password and refresh_token grants only these:
# a public client naming itself there (the API docs page, RFC 6749 3.2.1) is not authenticated.
SERVICE_ACCOUNT_ID_PREFIX = "mgc_"
CLIENT_CREDENTIALS = "client_credentials"


def is_service_account_id(client_id: str) -> bool:
    return client_id.startswith(SERVICE_ACCOUNT_ID_PREFIX)


def authenticated_client_id(grant_type: str | None, authorization: str | None, form_client_id: str | None) -> str:
    """The client id the token endpoint authenticates for this request ("" for none): the Basic
    credentials' id, else the form's ``client_id``; only for the client_credentials grant or a
    service account's id. MalformedCredentials for a Basic header that does not decode."""
    basic = basic_credentials(authorization) if authorization else None
    client_id = basic[0] if basic is not None and basic[0] else (form_client_id or "")
    if grant_type == CLIENT_CREDENTIALS or is_service_account_id(client_id):
        return client_id
    return ""
