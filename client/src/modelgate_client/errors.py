"""Typed errors: one class per kind of answer, each carrying what the server said.

The message is the server's error text, never a request's body or headers: a token, password or
client secret never reaches an exception's message or repr.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

REQUEST_ID_HEADER = "X-Request-ID"
# A server's text is bounded in a message: a 422's list of problems can be long.
MAX_MESSAGE_CHARS = 500
# An error code (invalid_grant, insufficient_scope, ...), as opposed to a sentence.
ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")


class ModelgateError(Exception):
    """Base of every error this package raises for an answer of the server (or none)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        # The body's structured part (a 422's list of problems), for programs.
        self.details = details

    def __str__(self) -> str:
        parts = [str(self.status)] if self.status is not None else []
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        return f"{text} (request id {self.request_id})" if self.request_id else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(ModelgateError):
    """401, or a token request refused: wrong or expired credentials."""


class PermissionDenied(ModelgateError):
    """403: the token lacks the scope this call needs."""


class NotFound(ModelgateError):
    """404: no such model, user or client."""


class Conflict(ModelgateError):
    """409: the name is taken."""


class ValidationError(ModelgateError):
    """400, 413 or 422: the request was refused for what it holds; ``details`` says why."""


class RateLimited(ModelgateError):
    """429 after the retries allowed (or a wait longer than ``max_wait``)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ModelgateError):
    """5xx after the retries allowed."""


class TransportError(ModelgateError):
    """No answer at all: connection refused, timeout."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the delay form; the gateway never sends a date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds == seconds else None  # NaN: no usable value


def _code_and_message(body: Any, response: httpx.Response) -> tuple[str | None, str, Any]:
    """The error code, message and details of any of the stack's error bodies:
    ``{"error", "detail"}``, RFC 6749 ``{"error", "error_description"}``, FastAPI ``{"detail": ...}``,
    V2 ``{"error": "..."}``."""
    if not isinstance(body, dict):
        return None, response.reason_phrase or f"HTTP {response.status_code}", None
    code = body.get("error") if isinstance(body.get("error"), str) else None
    detail = body.get("error_description", body.get("detail"))
    if detail is None and code is not None and not ERROR_CODE.fullmatch(code):
        # The Open Inference Protocol's {"error": "unknown model 'x'"}: a message, not a code.
        return None, code, None
    if isinstance(detail, str):
        return code, detail, None
    if isinstance(detail, list):
        # FastAPI's 422 problems: "body.instances.0.age: field required; ..."
        problems = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []))
                problems.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return code, "; ".join(problems) or "invalid request", detail
    return code, code or response.reason_phrase or f"HTTP {response.status_code}", detail


def error_for(response: httpx.Response) -> ModelgateError:
    """The typed error for a response of status 400 and over (its body must have been read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message, details = _code_and_message(body, response)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    kwargs: dict[str, Any] = {
        "status": response.status_code,
        "code": code,
        "request_id": response.headers.get(REQUEST_ID_HEADER),
        "details": details,
    }
    status = response.status_code
    if status == 429:
        return RateLimited(message, retry_after=retry_after_seconds(response), **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    if status == 401 or code in ("invalid_client", "invalid_grant"):
        return AuthenticationError(message, **kwargs)
    if status == 403:
        return PermissionDenied(message, **kwargs)
    if status == 404:
        return NotFound(message, **kwargs)
    if status == 409:
        return Conflict(message, **kwargs)
    if status in (400, 413, 415, 422):
        return ValidationError(message, **kwargs)
    return ModelgateError(message, **kwargs)
