"""The e2e and security suites start the real stack through the same launcher as ``make up``.

One stack serves the whole session, so tests share its rate-limit buckets. Each test uses
its own usernames. Every login from the plain ``gateway`` client costs one token from the
per-IP login bucket of 127.0.0.1 (``60/minute:30``, and the suite runs in seconds), so a test
that logs in more than a couple of times uses ``own_ip_client``: a client behind the trusted
proxy with an X-Forwarded-For address of its own, hence login and anonymous buckets of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar
from urllib.parse import parse_qs

import httpx
import pytest
from modelgate_shared.stack import Stack, free_port, running_stack
from modelgate_shared.testing import training_data_source

ADMIN_USERNAME = "e2e-admin"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"
# Small enough to reach in a test, large enough that the other tests never hit it.
PREDICT_LIMIT_PER_MINUTE = 120
# A reverse proxy in front of the gateway, as far as the gateway knows: the only peer whose
# X-Forwarded-For it believes. Everything else connects from 127.0.0.1 and is a direct client,
# exactly as with the default (empty) MODELGATE_GATEWAY_TRUSTED_PROXIES. Linux routes all of
# 127.0.0.0/8 to loopback, so a client only has to bind to this address to be that proxy.
PROXY_ADDRESS = "127.0.0.2"
# Auth believes X-Forwarded-For from the gateway (127.0.0.1, its default); the gateway passes a
# trusted proxy's chain on with the proxy appended, so auth has to trust that proxy too to see
# past it. An operator who puts a proxy in front of the gateway must list it in both settings.
AUTH_TRUSTED_PROXIES = f'["127.0.0.1/32", "::1/128", "{PROXY_ADDRESS}/32"]'
DEADLINE_SECONDS = 10.0
# Short, so the slow-client tests (tests/security/test_slow_clients.py) finish quickly; every
# other test sends its requests whole, long before either deadline.
CLIENT_HEADER_TIMEOUT_SECONDS = 3
CLIENT_BODY_TIMEOUT_SECONDS = 3
# An operator's host (the loopback trick of PROXY_ADDRESS): the one client allowed /metrics on
# the public URL without a token. Prometheus scrapes the metrics port instead.
METRICS_SCRAPER_ADDRESS = "127.0.0.3"
METRICS_PORT = free_port()

T = TypeVar("T")
# RFC 2544's benchmarking range: never a real client, and plenty of addresses for a session.
_client_addresses = (str(ip) for ip in ipaddress.ip_network("198.18.0.0/15").hosts())


def fresh_client_ip() -> str:
    """An address no other test of this session uses (the proxy's clients)."""
    return next(_client_addresses)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    extra_env = {
        "MODELGATE_AUTH_BCRYPT_ROUNDS": "4",
        "MODELGATE_ADMIN_USERNAME": ADMIN_USERNAME,
        "MODELGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT": f"{PREDICT_LIMIT_PER_MINUTE}/minute",
        "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "0.1",
        "MODELGATE_GATEWAY_TRUSTED_PROXIES": f'["{PROXY_ADDRESS}/32"]',
        "MODELGATE_AUTH_TRUSTED_PROXIES": AUTH_TRUSTED_PROXIES,
        "MODELGATE_HEADER_TIMEOUT_SECONDS": str(CLIENT_HEADER_TIMEOUT_SECONDS),
        "MODELGATE_BODY_TIMEOUT_SECONDS": str(CLIENT_BODY_TIMEOUT_SECONDS),
        "MODELGATE_GATEWAY_METRICS_ALLOW": f'["{METRICS_SCRAPER_ADDRESS}/32"]',
        "MODELGATE_GATEWAY_METRICS_PORT": str(METRICS_PORT),
    }
    with running_stack(training_data=training_data_source(), extra_env=extra_env) as running:
        STACKS.append(running)
        yield running


@pytest.fixture(scope="session")
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A direct client of the gateway, from 127.0.0.1."""
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, event_hooks=RECORD_SECRETS) as client:
        yield client


@pytest.fixture(scope="session")
async def proxy(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The trusted reverse proxy: whatever X-Forwarded-For it sends is believed."""
    transport = httpx.AsyncHTTPTransport(local_address=PROXY_ADDRESS)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, timeout=30, transport=transport, event_hooks=RECORD_SECRETS
    ) as client:
        yield client


@pytest.fixture
def own_ip() -> str:
    """This test's client address, for ``own_ip_client``."""
    return fresh_client_ip()


@pytest.fixture
async def own_ip_client(stack: Stack, own_ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client behind the trusted proxy whose address (``own_ip``) no other test uses."""
    transport = httpx.AsyncHTTPTransport(local_address=PROXY_ADDRESS)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url,
        timeout=30,
        transport=transport,
        headers={"X-Forwarded-For": own_ip},
        event_hooks=RECORD_SECRETS,
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def admin_token(gateway: httpx.AsyncClient) -> str:
    response = await gateway.post(
        "/auth/token",
        data={"grant_type": "password", "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "scope": "admin"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_up(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A new user: (username, password, user id, which is every token's ``sub``)."""
    username = f"user-{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    response = await client.post(
        "/auth/users", json={"username": username, "password": password, "email": f"{username}@example.com"}
    )
    assert response.status_code == 201, response.text
    SECRETS.add("password", password)
    return username, password, str(response.json()["id"])


async def password_login(
    client: httpx.AsyncClient, username: str, password: str, scope: str | None = None
) -> dict[str, str]:
    """The token response of a successful password grant."""
    form = {"grant_type": "password", "username": username, "password": password}
    if scope:
        form["scope"] = scope
    response = await client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    SECRETS.add("password", password)
    SECRETS.record_token_response(response.json())
    return dict(response.json())


async def signup_and_login(gateway: httpx.AsyncClient, scope: str | None = None) -> tuple[str, str]:
    username, password, _ = await sign_up(gateway)
    return username, (await password_login(gateway, username, password, scope))["access_token"]


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, within: float = DEADLINE_SECONDS) -> T:
    """Poll ``check`` until it returns something other than None; fail after ``within`` seconds.

    For effects that happen off the request path (the request log is written in batches).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if loop.time() > deadline:
            pytest.fail(f"{what}: not seen within {within:.0f}s")
        await asyncio.sleep(0.05)


# -- the secrets ledger (tests/security/test_secrets.py) ------------------------------------------
# Every credential the session sends to or gets from a stack, so that the last test can search the
# stacks' databases, logs and state folders for them. The helpers above record what they create;
# the fixtures' clients record whatever any test sends or receives (request and response hooks).

# Form, JSON and query fields that carry a credential, in any API of the stack.
PASSWORD_FIELDS = ("password", "current_password", "new_password")
TOKEN_FIELDS = ("refresh_token", "access_token", "token")
# What auth's tokens look like: a JWS, or a refresh token (base64url).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,}|[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class SecretLedger:
    """Credentials by value (and what kind each is). Values too short or too uniform to be a
    credential (``"x"``, ``"a" * 10_000``) are left out: they would match by coincidence."""

    MIN_LENGTH, MAX_LENGTH, MIN_DISTINCT = 8, 16384, 6

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[str, str]] = {}
        self.current_test = "(session set-up)"  # where a value was first seen, to tell a hit's source

    def add(self, kind: str, value: object) -> None:
        if (
            isinstance(value, str)
            and self.MIN_LENGTH <= len(value) <= self.MAX_LENGTH
            and len(set(value)) >= self.MIN_DISTINCT
            and value.isprintable()
        ):
            self._kinds.setdefault(value, (kind, self.current_test))

    def add_token(self, kind: str, value: object) -> None:
        if isinstance(value, str) and TOKEN_SHAPE.fullmatch(value):
            self.add(kind, value)

    def record_token_response(self, body: object) -> None:
        if isinstance(body, dict):
            self.add_token("access token", body.get("access_token"))
            self.add_token("refresh token", body.get("refresh_token"))

    def record_fields(self, fields: object) -> None:
        """The credentials in a request's fields. A value also sent in a field that is no
        credential (a hostile-input test's one string in every field) is not one."""
        if not isinstance(fields, dict):
            return
        values = {n: v if isinstance(v, list) else [v] for n, v in fields.items()}
        credential_fields = PASSWORD_FIELDS + TOKEN_FIELDS
        public = {v for n, vs in values.items() if n not in credential_fields for v in vs if isinstance(v, str)}
        for name in PASSWORD_FIELDS:
            for value in values.get(name, []):
                if isinstance(value, str) and value not in public:
                    self.add("password", value)
        for name in TOKEN_FIELDS:
            for value in values.get(name, []):
                self.add_token(name.replace("_", " "), value)

    def items(self) -> list[tuple[str, str, str]]:
        """``(kind, value, the test that first sent or received it)``."""
        return [(kind, value, origin) for value, (kind, origin) in self._kinds.items()]

    def __len__(self) -> int:
        return len(self._kinds)


SECRETS = SecretLedger()
SECRETS.add("password", ADMIN_PASSWORD)
# Every stack this session started, for the same search.
STACKS: list[Stack] = []


async def _record_request(request: httpx.Request) -> None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        SECRETS.add_token("bearer token", credentials.strip())
    SECRETS.record_fields(parse_qs(request.url.query.decode("latin-1")))
    try:
        content = request.content
    except httpx.RequestNotRead:  # a streamed body (multipart): not read here
        return
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        SECRETS.record_fields(parse_qs(content.decode("latin-1")))
    elif "json" in content_type:
        # RecursionError: a hostile-input test's 10,000 levels of nesting.
        with contextlib.suppress(ValueError, RecursionError):
            SECRETS.record_fields(json.loads(content))


async def _record_response(response: httpx.Response) -> None:
    if response.request.url.path.endswith("/token") and response.status_code == 200:
        await response.aread()
        with contextlib.suppress(ValueError):
            SECRETS.record_token_response(response.json())


RECORD_SECRETS = {"request": [_record_request], "response": [_record_response]}


@pytest.fixture(autouse=True)
def _secrets_origin(request: pytest.FixtureRequest) -> None:
    SECRETS.current_test = request.node.nodeid
