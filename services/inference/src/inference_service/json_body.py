"""Reading request bodies (JSON, multipart) with a size cap, and fast JSON in both directions."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from fastapi import Request
from modelgate_shared.request_body import BodyTooLarge
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from .validation import InputError, Problem


class InvalidJson(Exception):
    """The body is not JSON; ``str(exc)`` names where it broke."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing early (by Content-Length) or as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    # isascii: str.isdigit also takes "²", which int() refuses; a 19-digit length is past any limit.
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int, *, parts: str, max_files: int, max_fields: int) -> FormData:
    """A multipart/form-data body. The whole body is size-capped before parsing, so an
    oversized upload is refused without being spooled to disk first. ``parts`` names what
    the upload should hold, for the error message. The caller closes the form."""
    body = await read_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InputError(
            [Problem(("body",), f"expected a multipart/form-data upload with {parts}", "value_error.content_type")]
        )

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=max_files, max_fields=max_fields)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise InputError(
            [Problem(("body",), f"malformed multipart upload: {exc.message}", "value_error.multipart")]
        ) from None


def parse_json(body: bytes) -> Any:
    """orjson first (fast); the standard library only when that fails, because it also
    reads NaN/Infinity, which validation then rejects by row and field instead of as bad JSON."""
    if not body.strip():
        raise InvalidJson("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from None
    except ValueError:
        # Python refuses integers of more than 4300 digits (sys.get_int_max_str_digits).
        raise InvalidJson("request body is not valid JSON: a number has too many digits") from None


class OrjsonResponse(Response):
    """JSON rendered by orjson (numpy arrays included): encoding a 10,000-row answer
    costs a few milliseconds instead of tens."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
