"""422 bodies without secrets, and the catch-all 500 that logs no request data."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Form
from modelgate_shared.db import make_engine
from modelgate_shared.error_bodies import (
    REDACTED,
    UNAVAILABLE_BODY,
    InternalErrorMiddleware,
    backing_unavailable,
    describe_exception,
    install_error_handling,
    redact_errors,
)
from modelgate_shared.request_context import RequestIdMiddleware
from modelgate_shared.stack import free_port
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.types import Message, Receive, Scope, Send

SECRET = "hunter2-very-secret"


def test_secret_fields_keep_type_loc_and_msg_but_not_their_input() -> None:
    errors = [
        {"type": "string_too_short", "loc": ("body", "password"), "msg": "too short", "input": SECRET, "ctx": {}},
        {"type": "value_error", "loc": ("body", "current_password"), "msg": "bad", "input": SECRET},
        {"type": "missing", "loc": ("body", "refresh_token"), "msg": "Field required", "input": SECRET},
        {"type": "value_error", "loc": ("query", "Client-Secret"), "msg": "bad", "input": SECRET},
        {"type": "int_type", "loc": ("body", "items", 0, "token"), "msg": "bad", "input": SECRET},
    ]
    safe = redact_errors(errors)
    assert SECRET not in json.dumps(safe)
    assert [e["input"] for e in safe] == [REDACTED] * 5
    assert safe[0] == {
        "type": "string_too_short",
        "loc": ["body", "password"],
        "msg": "too short",
        "input": REDACTED,
        "ctx": {},
    }
    assert safe[4]["loc"] == ["body", "items", 0, "token"]


def test_a_whole_body_input_is_redacted_inside_or_withheld() -> None:
    as_dict = {"username": "alice", "password": SECRET, "profile": {"refresh_token": SECRET, "x": 1}}
    form = f"username=alice&password={SECRET}"
    safe = redact_errors(
        [
            {"type": "missing", "loc": ("body", "email"), "msg": "Field required", "input": as_dict},
            {"type": "model_attributes_type", "loc": ("body",), "msg": "not an object", "input": form},
            {"type": "model_attributes_type", "loc": ("body",), "msg": "not an object", "input": [as_dict]},
        ]
    )
    assert SECRET not in json.dumps(safe)
    assert safe[0]["input"] == {
        "username": "alice",
        "password": REDACTED,
        "profile": {"refresh_token": REDACTED, "x": 1},
    }
    assert safe[1]["input"] == REDACTED
    assert safe[2]["input"][0]["username"] == "alice"


def test_ctx_keeps_limits_and_drops_values() -> None:
    error = ValueError(f"echoing {SECRET}")
    safe = redact_errors(
        [
            {"type": "value_error", "loc": ("body", "password"), "msg": "x", "input": 1, "ctx": {"error": error}},
            {"type": "too_short", "loc": ("body", "password"), "msg": "x", "input": 1, "ctx": {"min_length": 10}},
            {"type": "pattern", "loc": ("body", "password"), "msg": "x", "input": 1, "ctx": {"pattern": SECRET}},
            {"type": "pattern", "loc": ("body", "name"), "msg": "x", "input": 1, "ctx": {"pattern": "^a$"}},
        ]
    )
    assert [e["ctx"] for e in safe] == [{}, {"min_length": 10}, {}, {"pattern": "^a$"}]


def test_echoes_are_bounded() -> None:
    deep: Any = 1
    for _ in range(900):
        deep = [deep]
    long_key = "k" * 100_000
    safe = redact_errors(
        [
            {"type": "t", "loc": ("body", "name"), "msg": "m", "input": "x" * 100_000},
            {"type": "t", "loc": ("body",), "msg": "m", "input": deep},
            {"type": "t", "loc": ("body", long_key), "msg": "m", "input": 10**400},
            {"type": "t", "loc": ("body", "n"), "msg": "m", "input": list(range(10_000))},
        ]
    )
    assert len(json.dumps(safe)) < 2_000
    assert safe[2]["input"] == "..."


def test_echoes_are_valid_json_text() -> None:
    # json.loads reads 1e400 as inf, and "\ud800" as a lone surrogate: neither can be rendered.
    safe = redact_errors(
        [
            {"type": "t", "loc": ("body", "n"), "msg": "m", "input": float("inf")},
            {"type": "t", "loc": ("body", "name\ud800"), "msg": "m", "input": "x\ud800"},
        ]
    )
    assert [e["input"] for e in safe] == ["inf", "x\ufffd"]
    assert safe[1]["loc"] == ["body", "name\ufffd"]
    json.dumps(safe, allow_nan=False).encode()


class SignUp(BaseModel):
    username: str
    password: Annotated[str, Field(min_length=10)]


def _app(raising: Callable[[], None] | None = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    install_error_handling(app)

    @app.post("/users")
    async def sign_up(body: SignUp) -> dict[str, str]:
        return {"username": body.username}

    @app.post("/token")
    async def token(password: Annotated[str, Form(min_length=10)]) -> dict[str, str]:
        return {}

    @app.get("/items/{item_id}")
    async def boom(item_id: str) -> None:
        assert raising is not None
        raising()

    return app


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.test")


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"username": "alice", "password": "short-pw"}},
        {"json": {"password": "short-pw"}},
        {"json": {"username": ["alice"], "password": "short-pw"}},
        {"data": {"username": "alice", "password": "short-pw"}},  # a form body where JSON is expected
        {"content": b"username=alice&password=short-pw", "headers": {"content-type": "text/plain"}},
    ],
)
async def test_no_422_body_echoes_a_submitted_password(request_kwargs: dict[str, Any]) -> None:
    async with _client(_app()) as client:
        response = await client.post("/users", **request_kwargs)
    assert response.status_code == 422
    assert "short-pw" not in response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_form_fields_are_redacted_too() -> None:
    async with _client(_app()) as client:
        response = await client.post("/token", data={"password": "short-pw"})
    assert response.status_code == 422
    assert "short-pw" not in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "password"]


EMAIL = "alice@example.com"


def _raise_db_error() -> None:
    # What a driver error looks like: the statement's values in the message.
    parameters = (EMAIL, f"$bcrypt-sha256$v=2,t=2b,r=12${SECRET}")
    raise RuntimeError(f"INSERT failed: [parameters: {parameters}]")


async def test_an_unhandled_exception_is_a_json_500_and_one_log_record_without_its_message(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _client(_app(_raise_db_error)) as client:
        response = await client.get("/items/42", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal error", "request_id": "req-42"}
    assert response.headers.get_list("x-request-id") == ["req-42"]
    logged = caplog.text + "".join(capsys.readouterr())
    assert SECRET not in logged and EMAIL not in logged
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is None
    message = record.getMessage()
    assert "RuntimeError" in message and "GET /items/{item_id}" in message and "req-42" in message
    assert "_raise_db_error" in message  # where it was raised: the frames, not the message


async def test_in_front_of_a_bare_asgi_app_it_answers_with_the_id_that_app_was_given() -> None:
    seen: list[str] = []

    secret = SECRET

    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["state"]["request_id"])
        raise KeyError(secret)

    async with _client(InternalErrorMiddleware(proxy)) as client:
        response = await client.get("/v1/anything")
    assert response.status_code == 500
    assert response.json()["request_id"] == seen[0] == response.headers["x-request-id"]
    assert SECRET not in response.text


async def test_after_the_response_started_it_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = SECRET

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError(secret)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    # Not re-raised (the server would log the message); the server ends the unfinished response.
    await InternalErrorMiddleware(streaming)({"type": "http", "method": "GET", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert "ValueError" in caplog.text and SECRET not in caplog.text


def test_describe_exception_walks_the_chain_without_messages() -> None:
    secret = SECRET
    try:
        try:
            raise ValueError(secret)
        except ValueError as inner:
            raise RuntimeError(secret) from inner
    except RuntimeError as exc:
        text = describe_exception(exc)
    assert "ValueError (message withheld)" in text and "RuntimeError (message withheld)" in text
    assert SECRET not in text


async def test_engine_errors_do_not_quote_bound_parameters(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("SELECT CAST(:v AS text) || 1 / (2 - 2)"), {"v": SECRET})
    finally:
        await engine.dispose()
    assert "division by zero" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_an_unreachable_database_is_a_503_with_retry_after_not_a_500(caplog: pytest.LogCaptureFixture) -> None:
    # A real engine and a real refusal: nothing listens on this port.
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/modelgate")

    async def query() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    app = _app()

    @app.get("/needs-the-database")
    async def needs_the_database() -> None:
        await query()

    try:
        async with _client(app) as client:
            response = await client.get("/needs-the-database", headers={"X-Request-ID": "req-db"})
    finally:
        await engine.dispose()
    assert response.status_code == 503
    assert response.json() == {**UNAVAILABLE_BODY, "request_id": "req-db"}
    assert response.headers["retry-after"] == "1"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "answered 503" in r.getMessage()]
    assert "ConnectionRefusedError" in warning.getMessage() and "GET /needs-the-database" in warning.getMessage()


async def test_backing_unavailable_tells_outages_from_bugs(tmp_path: Path) -> None:
    assert backing_unavailable(ConnectionResetError())
    assert not backing_unavailable(RuntimeError("a bug"))
    assert not backing_unavailable(ValueError("a bug"))
    # A Unix socket that is gone (Postgres stopped) is FileNotFoundError, raised in the driver...
    with pytest.raises(OSError) as gone:
        await asyncpg.connect(host=str(tmp_path), user="postgres", database="modelgate", timeout=5)
    assert isinstance(gone.value, FileNotFoundError)
    assert backing_unavailable(gone.value)
    # ... while a file of the service's own that is missing is a bug: still a 500.
    with pytest.raises(FileNotFoundError) as missing:
        (tmp_path / "absent.pem").read_bytes()
    assert not backing_unavailable(missing.value)
