"""Error responses: V1 answers FastAPI's ``{"detail": ...}``, V2 the protocol's ``{"error": "..."}``.

One set of exceptions, two renderings chosen by path, so the core code never has to know
which protocol it is serving.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from modelgate_shared.error_bodies import install_error_handling, redact_errors
from modelgate_shared.request_body import BodyTooLarge
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from .json_body import InvalidJson
from .validation import InputError, Problem, TooManyRows


def is_v2(request: Request) -> bool:
    path = request.url.path
    return path == "/v2" or path.startswith("/v2/")


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_v2(request):
        return v2_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # The shared redaction, whichever protocol renders it.
    errors = redact_errors(exc.errors())
    if is_v2(request):
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return v2_error(400, f"{where}: {first.get('msg', 'invalid request')}")
    return JSONResponse({"detail": errors}, status_code=422)


def _problems_response(request: Request, problems: list[Problem]) -> JSONResponse:
    if is_v2(request):
        return v2_error(400, "; ".join(p.msg for p in problems))
    return JSONResponse({"detail": [p.as_dict() for p in problems]}, status_code=422)


async def _input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return _problems_response(request, exc.problems)


async def _invalid_json(request: Request, exc: Exception) -> Response:
    return _problems_response(request, [Problem(("body",), str(exc), "value_error.json")])


async def _too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManyRows | BodyTooLarge)
    if is_v2(request):
        return v2_error(413, str(exc))
    return JSONResponse({"detail": str(exc)}, status_code=413)


def install_error_handlers(app: FastAPI) -> None:
    # The catch-all 500 every service has; the 422 handler it installs is replaced below.
    install_error_handling(app)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(InvalidJson, _invalid_json)
    app.add_exception_handler(TooManyRows, _too_large)
    app.add_exception_handler(BodyTooLarge, _too_large)
