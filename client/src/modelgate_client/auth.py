"""``TokenAuth``: an ``httpx.Auth`` that logs in, refreshes before expiry and retries once on a 401.

Users log in with the password grant and refresh with their refresh token (each refresh returns
a new one: the old one is spent, and spending it twice revokes the session, so refreshes are
serialised by a lock). Service accounts have no refresh token: they run the client_credentials
grant again. The token endpoint comes from the discovery document.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from urllib.parse import quote_plus

import httpx

from .errors import AuthenticationError, ModelgateError, error_for

DISCOVERY_PATH = "/auth/.well-known/openid-configuration"
# Refresh this long before the token's expiry (or at half its life, if that is sooner), so a
# request never leaves with a token that expires on its way. Negative: refresh only on a 401.
DEFAULT_REFRESH_MARGIN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PasswordLogin:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"PasswordLogin(username={self.username!r})"


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r})"


@dataclass(frozen=True, slots=True)
class StoredRefreshToken:
    """A refresh token kept from an earlier login (the CLI's)."""

    refresh_token: str

    def __repr__(self) -> str:
        return "StoredRefreshToken(...)"


Credentials = PasswordLogin | ClientCredentials | StoredRefreshToken


class TokenAuth(httpx.Auth):
    """Bearer tokens for every request of one ``httpx.Client`` or ``httpx.AsyncClient``."""

    requires_response_body = True

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        scope: str | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        on_refresh_token: Callable[[str], None] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._scope = scope
        self._refresh_margin = refresh_margin
        # Called with every new refresh token, so a caller that stores one (the CLI) keeps the live one.
        self._on_refresh_token = on_refresh_token
        self._token_endpoint: str | None = None
        self._access_token: str | None = None
        self._refresh_token: str | None = (
            credentials.refresh_token if isinstance(credentials, StoredRefreshToken) else None
        )
        self._refresh_at = 0.0
        self._sync_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"TokenAuth({self._base_url!r}, {self._credentials!r})"

    @property
    def access_token(self) -> str | None:
        """The current access token, if one has been fetched."""
        return self._access_token

    @property
    def refresh_token(self) -> str | None:
        """The live refresh token (users only), to keep for a later session."""
        return self._refresh_token

    def _stale(self) -> bool:
        return self._access_token is None or time.monotonic() >= self._refresh_at

    def _discovery_request(self) -> httpx.Request:
        return httpx.Request("GET", self._base_url + DISCOVERY_PATH)

    def _accept_discovery(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise error_for(response)
        endpoint = response.json().get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ModelgateError("the discovery document names no token endpoint", status=response.status_code)
        self._token_endpoint = endpoint

    def _token_request(self) -> httpx.Request:
        assert self._token_endpoint is not None
        form: dict[str, str]
        auth_header: dict[str, str] = {}
        creds = self._credentials
        if self._refresh_token is not None:
            form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        elif isinstance(creds, PasswordLogin):
            form = {"grant_type": "password", "username": creds.username, "password": creds.password}
        elif isinstance(creds, ClientCredentials):
            form = {"grant_type": "client_credentials"}
            auth_header = {"Authorization": _basic_header(creds.client_id, creds.client_secret)}
        else:
            raise AuthenticationError("the stored session has ended; log in again")
        if self._scope:
            form["scope"] = self._scope
        return httpx.Request("POST", self._token_endpoint, data=form, headers=auth_header)

    def _accept_token(self, response: httpx.Response) -> bool:
        """Take a token answer. False: a refresh token was refused and a password login may follow."""
        if response.status_code != 200:
            error = error_for(response)
            used_refresh = self._refresh_token is not None
            if used_refresh and isinstance(self._credentials, PasswordLogin) and error.code == "invalid_grant":
                self._refresh_token = None  # the session ended: log in afresh with the password
                return False
            self._access_token = None
            raise error
        body = response.json()
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not isinstance(lifetime, int | float):
            raise ModelgateError("the token endpoint's answer has no access_token/expires_in", status=200)
        self._access_token = token
        margin = min(self._refresh_margin, lifetime / 2)
        self._refresh_at = time.monotonic() + lifetime - margin
        refresh = body.get("refresh_token")
        if isinstance(refresh, str):
            self._refresh_token = refresh
            if self._on_refresh_token is not None:
                self._on_refresh_token(refresh)
        return True

    def _authorize(self, request: httpx.Request) -> str:
        assert self._access_token is not None
        request.headers["Authorization"] = f"Bearer {self._access_token}"
        return self._access_token

    def _needs_token(self, retry_of: str | None) -> bool:
        # On the retry after a 401, a token another request has fetched meanwhile will do.
        return self._stale() or (retry_of is not None and self._access_token == retry_of)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent_with: str | None = None
        for _ in range(2):  # the request, then once more after a 401
            with self._sync_lock:
                if self._needs_token(sent_with):
                    self._access_token = None
                    if self._token_endpoint is None:
                        response = yield self._discovery_request()
                        response.read()
                        self._accept_discovery(response)
                    for _ in range(2):  # a refused refresh token, then the password
                        response = yield self._token_request()
                        response.read()
                        if self._accept_token(response):
                            break
                sent_with = self._authorize(request)
            response = yield request
            if response.status_code != 401:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        sent_with: str | None = None
        for _ in range(2):
            async with self._async_lock:
                if self._needs_token(sent_with):
                    self._access_token = None
                    if self._token_endpoint is None:
                        response = yield self._discovery_request()
                        await response.aread()
                        self._accept_discovery(response)
                    for _ in range(2):
                        response = yield self._token_request()
                        await response.aread()
                        if self._accept_token(response):
                            break
                sent_with = self._authorize(request)
            response = yield request
            if response.status_code != 401:
                return


def _basic_header(client_id: str, client_secret: str) -> str:
    """client_secret_basic: RFC 6749 2.3.1 form-encodes both parts before Base64."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
