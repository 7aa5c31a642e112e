"""The login form as auth reads it: the username and the client id the login guard keys on.

Auth's ``POST /token`` takes its parameters with FastAPI's ``Form()``, that is Starlette's form
parsers over python-multipart, for the two body encodings Starlette parses
(``application/x-www-form-urlencoded`` and ``multipart/form-data``). The guard reads the body
with those same parsers and normalises the name with the function auth looks accounts up with
(``modelgate_shared.usernames``), so its bucket is the account auth will authenticate, however
the body is encoded or the name spelled. Whatever could make the two read the body differently
is refused before auth sees it (400 ``invalid_request``): another body encoding, a second
Content-Type, a repeated parameter (RFC 6749 3.2), a file part, a body that does not parse.
400 rather than 415 for an encoding: RFC 6749 5.2 clients read an error from a 400 with an
``invalid_request`` body, which is also what auth itself answers a body it cannot read.

A service account authenticates with its client id in HTTP Basic or the form's ``client_id``: the
guard finds it with the function auth uses (``modelgate_shared.oauth_params.authenticated_client_id``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from modelgate_shared.oauth_params import (
    MalformedCredentials,
    authenticated_client_id,
    repeated_parameter,
    repeated_parameter_error,
)
from modelgate_shared.usernames import canonical_username
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

URLENCODED = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"
# A token request has a handful of parameters; auth's own limit (Starlette's) is 1000.
MAX_LOGIN_FIELDS = 50
UNSUPPORTED_ENCODING = (
    "the token endpoint takes application/x-www-form-urlencoded or multipart/form-data (RFC 6749 4.3.2)"
)


class BadLoginRequest(Exception):
    """The login body cannot be read as one unambiguous form; ``description`` holds no client data
    beyond a parameter name."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def parse_login_form(content_types: Sequence[bytes], body: bytes) -> list[tuple[str, str]]:
    """The form's (name, value) pairs, parsed as Starlette parses them for auth; BadLoginRequest otherwise.

    ``content_types``: every Content-Type header of the request (one is required).
    """
    if not content_types:
        raise BadLoginRequest(UNSUPPORTED_ENCODING)
    if len(content_types) > 1:
        raise BadLoginRequest("exactly one Content-Type header is required")
    media_type, _ = parse_options_header(content_types[0])
    headers = Headers(raw=[(b"content-type", content_types[0])])
    parser: FormParser | MultiPartParser
    if media_type == URLENCODED:
        parser = FormParser(headers, _once(body), max_fields=MAX_LOGIN_FIELDS)
    elif media_type == MULTIPART:
        # No file parts (so nothing to close afterwards): auth's parameters are plain fields.
        parser = MultiPartParser(headers, _once(body), max_files=0, max_fields=MAX_LOGIN_FIELDS)
    else:
        raise BadLoginRequest(UNSUPPORTED_ENCODING)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadLoginRequest(f"malformed form body: {exc.message}") from None
    except Exception:
        # Any other parser failure on client input is a malformed body too, never a 500.
        raise BadLoginRequest("malformed form body") from None
    items = form.multi_items()
    return [(name, value) for name, value in items if isinstance(value, str)]


@dataclass(frozen=True, slots=True)
class Login:
    """Who a token request authenticates: ``""`` for none."""

    # In the form auth finds the account by.
    username: str
    # A service account's (or, for the client_credentials grant, any presented) client id.
    client_id: str


async def read_login(content_types: Sequence[bytes], authorization: bytes | None, body: bytes) -> Login:
    """The username and client id auth will authenticate; BadLoginRequest when the body is not one
    unambiguous form. ``authorization``: the request's (first) Authorization header."""
    fields = await parse_login_form(content_types, body)
    repeated = repeated_parameter(name for name, _ in fields)
    if repeated is not None:
        raise BadLoginRequest(repeated_parameter_error(repeated))
    form = dict(fields)
    try:
        # Latin-1, as Starlette decodes headers for auth.
        client_id = authenticated_client_id(
            form.get("grant_type"), authorization.decode("latin-1") if authorization else None, form.get("client_id")
        )
    except MalformedCredentials:
        # Auth answers invalid_client without looking any client up: nothing to key on.
        client_id = ""
    return Login(canonical_username(form.get("username", "")), client_id)


async def login_username(content_types: Sequence[bytes], body: bytes) -> str:
    """The username auth will authenticate, in the form it finds the account by ("" when the
    form names none); BadLoginRequest when the body is not one unambiguous form."""
    return (await read_login(content_types, None, body)).username
