"""Error answers that carry no secret and no request data, for every service.

- 422: FastAPI's ``{"detail": [...]}``, each error passed through ``redact_errors``: the
  ``input`` FastAPI echoes is withheld for secret fields (a sign-up with a short password
  would otherwise get its password back), and bounded for everything else.
- 500: ``InternalErrorMiddleware`` turns any exception no handler took into
  ``{"error": "internal_error", "detail": "internal error", "request_id": ...}`` and one log
  record: the exception's type, the request id, the route and the frames it was raised
  through, never its message. The message is where request data leaks: asyncpg and
  SQLAlchemy errors quote the values of the failed statement. Starlette's own last resort
  re-raises to the server, which logs the whole traceback, message included.
- 503: the same middleware, for an exception that means a server the service needs (its
  database) is unreachable or went away (``backing_unavailable``): ``{"error":
  "temporarily_unavailable", ...}`` with ``Retry-After``, and one warning. An outage is not a bug,
  and a client or proxy may retry a 503.
"""

from __future__ import annotations

import json
import logging
import math
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from asyncpg.exceptions import OperatorInterventionError, PostgresConnectionError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .request_context import REQUEST_ID_HEADER, accept_or_generate, header_value, request_id_var
from .stored_text import storable

log = logging.getLogger(__name__)

# Field names whose values are credentials, in any location (body, form, query, header).
SECRET_FIELDS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "old_password",
        "refresh_token",
        "access_token",
        "id_token",
        "token",
        "client_secret",
        "code_verifier",
        "authorization",
        "cookie",
    }
)
REDACTED = "[redacted]"
TRUNCATED = "..."
# How much of a non-secret input a 422 echoes back: enough to see what was wrong, not a
# 100 KB string or a 900-level nesting (which also overflows the JSON encoder's recursion).
MAX_ECHO_CHARS = 200
MAX_ECHO_ITEMS = 20
MAX_ECHO_DEPTH = 6

INTERNAL_ERROR_BODY = {"error": "internal_error", "detail": "internal error"}
# RFC 6749's code for a server that cannot answer for now: auth's /token answers it too.
UNAVAILABLE_BODY = {
    "error": "temporarily_unavailable",
    "detail": "a server this service needs is unavailable; try again",
}
UNAVAILABLE_RETRY_AFTER_SECONDS = 1


def is_secret_name(name: object) -> bool:
    return isinstance(name, str) and name.lower().replace("-", "_") in SECRET_FIELDS


def _echo(value: Any, depth: int = 0) -> Any:
    """``value`` as a 422 may show it: secret keys redacted, sizes and depth bounded."""
    if isinstance(value, str):
        # storable: a lone surrogate cannot be encoded into the response body either.
        return storable(value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + TRUNCATED)
    if isinstance(value, float):
        # JSON has no Infinity or NaN (json.loads reads 1e400 as inf): as text.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bool | int) or value is None:
        return value if not isinstance(value, int) or value.bit_length() <= 64 else TRUNCATED
    if depth >= MAX_ECHO_DEPTH:
        return TRUNCATED
    if isinstance(value, Mapping):
        shown = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ECHO_ITEMS:
                shown[TRUNCATED] = TRUNCATED
                break
            shown[_echo(str(key))] = REDACTED if is_secret_name(key) else _echo(item, depth + 1)
        return shown
    if isinstance(value, list | tuple):
        items = [_echo(item, depth + 1) for item in value[:MAX_ECHO_ITEMS]]
        return [*items, TRUNCATED] if len(value) > MAX_ECHO_ITEMS else items
    # Anything else (an UploadFile, bytes): its type, not its content.
    return f"<{type(value).__name__}>"


def _safe_ctx(ctx: Mapping[str, Any], secret: bool) -> dict[str, Any]:
    # Limits (min_length, le, ...) stay; exception objects go (their text is already "msg"),
    # and for a secret field so does any text.
    kept: dict[str, Any] = {}
    for key, value in ctx.items():
        if isinstance(value, bool | int | float) or (isinstance(value, str) and not secret):
            kept[key] = _echo(value)
    return kept


def redact_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors fit for a response body (pure; the one redaction every service uses).

    An error located at a secret field keeps its ``type``, ``loc`` and ``msg`` but not its
    input. An error about the whole body (``loc == ("body",)``) echoes a dict with its secret
    keys redacted and anything else (a raw form body, where secrets cannot be told apart)
    not at all.
    """
    safe: list[dict[str, Any]] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        secret = any(is_secret_name(part) for part in loc)
        item: dict[str, Any] = {
            "type": error.get("type", "value_error"),
            "loc": [part if isinstance(part, int) else _echo(str(part)) for part in loc],
            "msg": storable(str(error.get("msg", ""))),
        }
        if "input" in error:
            value = error["input"]
            whole_body = loc == ("body",) and not isinstance(value, Mapping | list)
            item["input"] = REDACTED if secret or whole_body else _echo(value)
        ctx = error.get("ctx")
        if isinstance(ctx, Mapping):
            item["ctx"] = _safe_ctx(ctx, secret)
        safe.append(item)
    return safe


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 ``{"detail": [...]}``, redacted."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": redact_errors(exc.errors())}, status_code=422)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def backing_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means a server the service depends on could not be reached or went away:
    the OS refused the I/O (a refused or reset connection, a missing socket, a timeout), or
    Postgres closed the session (shutdown, ``cannot connect now``, a lost connection)."""
    for link in _chain(exc):
        if isinstance(link, ConnectionError | TimeoutError | PostgresConnectionError | OperatorInterventionError):
            return True
        if isinstance(link, DBAPIError) and link.connection_invalidated:
            return True
        # Other OS errors (a missing Unix socket is FileNotFoundError) only when a database or
        # Redis client raised them: a missing file of the service's own is still a bug, a 500.
        if isinstance(link, OSError) and _raised_in_a_client(link):
            return True
    return False


_CLIENT_PACKAGES = tuple(f"{os.sep}{name}{os.sep}" for name in ("asyncpg", "redis", "sqlalchemy"))


def _raised_in_a_client(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return any(package in frame.filename for frame in frames for package in _CLIENT_PACKAGES)


def exception_type_name(exc: BaseException) -> str:
    """``module.Class`` of an exception (just ``Class`` for builtins): safe to log, unlike its message."""
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def describe_exception(exc: BaseException) -> str:
    """The exception chain as types and frames (file, line, function, source line), without
    any exception's message or arguments: what a traceback shows, minus the data."""
    parts = []
    for link in reversed(list(_chain(exc))):
        frames = "".join(traceback.format_list(traceback.extract_tb(link.__traceback__)))
        parts.append(f"Traceback (most recent call last):\n{frames}{exception_type_name(link)} (message withheld)")
    return "\n\nwhich led to:\n\n".join(parts)


def _route(scope: Scope) -> str:
    # The route's template (/users/{user_id}), not the path, which is client data.
    route = scope.get("route")
    template = getattr(route, "path", None) if route is not None else None
    return f"{scope.get('method', '-')} {template or '(no route matched)'}"


class InternalErrorMiddleware:
    """Pure ASGI: an exception out of ``app`` becomes a JSON 500 and one log record without data
    (a 503 and a warning when a server the service needs is unavailable: ``backing_unavailable``).

    Installed inside ``RequestIdMiddleware`` (``install_error_handling``), it reads the
    request id from the log context. In front of an app without one (the gateway's proxy) it
    puts the client's id (or a new one) in ``scope["state"]`` first, where that app takes it from.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if "request_id" not in state and request_id_var.get() == "-":
            state["request_id"] = accept_or_generate(header_value(scope, REQUEST_ID_HEADER.encode()))
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request_id = request_id_var.get()
            if request_id == "-":
                request_id = state.get("request_id", "-")
            unavailable = backing_unavailable(exc)
            if unavailable:
                log.warning(
                    "%s in %s (request %s): a server it needs is unavailable; answered 503",
                    exception_type_name(exc),
                    _route(scope),
                    request_id,
                )
            else:
                log.error(
                    "unhandled %s in %s (request %s); %s",
                    exception_type_name(exc),
                    _route(scope),
                    request_id,
                    describe_exception(exc),
                )
            if started:
                return  # the status line is gone; the server ends the response short
            status, payload = (503, UNAVAILABLE_BODY) if unavailable else (500, INTERNAL_ERROR_BODY)
            body = json.dumps({**payload, "request_id": request_id}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if unavailable:
                headers.append((b"retry-after", str(UNAVAILABLE_RETRY_AFTER_SECONDS).encode()))
            if request_id_var.get() == "-":
                # No RequestIdMiddleware outside to add it.
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def install_error_handling(app: FastAPI) -> None:
    """The redacted 422 handler and the catch-all 500, for a FastAPI app.

    The middleware goes innermost of the app's own middleware whenever this is called, so
    ``RequestIdMiddleware`` is around it and the 500 carries the request id.
    """
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.user_middleware.append(Middleware(InternalErrorMiddleware))
