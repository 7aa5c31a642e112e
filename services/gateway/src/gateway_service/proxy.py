"""The proxy: a pure ASGI middleware that answers every routed path itself.

Pure ASGI (no Request objects, no per-request tasks) keeps the added latency small;
bodies are streamed both ways, so a large upload is never held in memory.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import httpx
from modelgate_shared.error_bodies import describe_exception, exception_type_name
from modelgate_shared.request_body import BodyTooLarge
from modelgate_shared.request_context import REQUEST_ID_HEADER, accept_or_generate, request_id_var
from modelgate_shared.stored_text import storable
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .forwarding import (
    Headers,
    InternalAddress,
    client_ip,
    header,
    public_url_headers,
    response_headers,
    unforwardable_header_detail,
    upstream_headers,
)
from .identity import Identity
from .login_form import BadLoginRequest, read_login
from .metrics import scraper_allowed
from .policies import identity_buckets, login_buckets, own_buckets
from .ratelimit import Decision, RateLimiterDown
from .request_log import LogRow
from .state import GatewayState
from .upstreams import Route, match_route

log = logging.getLogger(__name__)

# The login form is read whole (to find the username); it is small, so cap it hard.
MAX_LOGIN_BODY = 64 * 1024
# A declared body up to this size is read whole and forwarded as bytes: cheaper than a
# streamed generator per request, and a spent body no longer stops the try of another
# upstream. Larger (or undeclared, chunked) bodies are streamed as they arrive.
SMALL_BODY = 64 * 1024
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# RFC 6750 3.1, worded as modelgate_shared.bearer words the challenges of auth and inference.
TOKEN_REVOKED = b'Bearer realm="modelgate", error="invalid_token", error_description="token revoked"'
# Orchestrator probes: exempt from the own-endpoint limit from PROBE_ALLOW, and never refused
# because Redis is down (a liveness probe failing with Redis would restart a working gateway).
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# The metrics label of the gateway's own endpoints (proxied requests count under their route's name).
OWN_ROUTE = "gateway"


class ExchangeAborted(Exception):
    """The exchange cannot complete: the client went away, or the upstream failed mid-response."""


def json_error(
    status: int, error: str, detail: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[Message, Message]:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


# RFC 6749 5.2 error bodies, for what the gateway refuses on the token endpoint itself; no-store
# as auth sends them (RFC 6749 5.1).
_OAUTH_ERROR_HEADERS = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))


def oauth_error(status: int, error: str, description: str) -> tuple[Message, Message]:
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (
        {"type": "http.response.start", "status": status, "headers": [*headers, *_OAUTH_ERROR_HEADERS]},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


def has_dot_segments(path: str) -> bool:
    return any(segment in {".", ".."} for segment in path.split("/"))


_REQUEST_ID = REQUEST_ID_HEADER.encode()


class ProxyMiddleware:
    """Answers every routed path; the app it wraps gets everything else.

    It runs outside the app's middleware, so it does the request-id work itself: the id
    goes to the upstream, back to the client, into the log context and the request log.
    """

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = match_route(self.state.pool.routes, scope["path"])
        if route is None:
            await self.serve_own(scope, receive, send)
            return
        await Exchange(self.state, route, scope, receive, send).run()

    async def serve_own(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The gateway's own endpoints, behind the limiter: one Redis round trip, as for a proxied request."""
        state = self.state
        headers: Headers = scope["headers"]
        path: str = scope["path"]
        peer: str = scope["client"][0] if scope.get("client") else "unknown"
        if self._exempt(path, peer, headers):
            await self.app(scope, receive, send)
            return
        limiting = state.settings.rate_limit_enabled
        authorization = header(headers, b"authorization")
        if not limiting and authorization is None:
            await self.app(scope, receive, send)
            return
        identity = await state.identity.resolve(authorization)
        # A revoked token is refused here too (an admin's, on /admin/*), in the same round trip.
        checked = identity if identity.issued_at is not None else None
        if not limiting and checked is None:
            await self.app(scope, receive, send)
            return
        buckets = own_buckets(state.policies, identity.sub, client_ip(peer, headers, state.trusted)) if limiting else []
        decision: Decision | None
        try:
            decision = await state.limiter.decide(buckets, checked)
        except RateLimiterDown:
            if path not in PROBE_PATHS:
                await self._answer(
                    scope, send, 503, "rate_limiter_unavailable", "rate limiting is unavailable; try later"
                )
                return
            decision = None
        if decision is not None and decision.revoked:
            extra = [(b"www-authenticate", TOKEN_REVOKED)]
            await self._answer(scope, send, 401, "invalid_token", "token revoked", extra)
            return
        if decision is None or decision.policy is None:
            await self.app(scope, receive, send)
            return
        limit_headers = decision.headers()
        if not decision.allowed:
            state.metrics.rate_limited.labels(OWN_ROUTE).inc()
            detail = f"rate limit {decision.policy.name} exceeded; retry after {decision.retry_after_seconds}s"
            await self._answer(scope, send, 429, "rate_limited", detail, limit_headers)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *limit_headers]}
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def _exempt(self, path: str, peer: str, headers: Headers) -> bool:
        """Prometheus on the public /metrics (METRICS_ALLOW) and the orchestrator's probes (PROBE_ALLOW)."""
        state = self.state
        if path == "/metrics":
            return bool(state.metrics_allow) and scraper_allowed(peer, headers, state.trusted, state.metrics_allow)
        if path in PROBE_PATHS:
            return bool(state.probe_allow) and scraper_allowed(peer, headers, state.trusted, state.probe_allow)
        return False

    @staticmethod
    async def _answer(
        scope: Scope, send: Send, status: int, error: str, detail: str, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """An error answered before the app, with the request id the app's middleware would have set."""
        request_id = accept_or_generate((header(scope["headers"], b"x-request-id") or b"").decode("latin-1"))
        start, body = json_error(status, error, detail, [*extra, (_REQUEST_ID, request_id.encode())])
        await send(start)
        await send(body)


class Exchange:
    """One proxied request, from the client's first byte to the request-log row."""

    def __init__(self, state: GatewayState, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        self.state = state
        self.route = route
        self.scope = scope
        self.receive = receive
        self._send = send
        self.started = time.perf_counter()
        self.ts = datetime.now(UTC)
        headers: Headers = scope["headers"]
        self.peer: str = scope["client"][0] if scope.get("client") else "unknown"
        self.ip = client_ip(self.peer, headers, state.trusted)
        self.request_id: str = scope.get("state", {}).get("request_id") or accept_or_generate(
            (header(headers, b"x-request-id") or b"").decode("latin-1")
        )
        self.status = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.upstream: str | None = None
        self.target = ""  # the path and query asked of the upstream
        self.limited = False
        self.identity: Identity | None = None
        self.body: bytes | None = None  # set when the body had to be read before forwarding
        # A streamed body: some of it has gone upstream (no other upstream can be tried),
        # or it passed the limit (whatever error the transport then reports).
        self.body_started = False
        self.body_too_large = False
        self.limit_headers: Headers = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"].append((_REQUEST_ID, self.request_id.encode()))
        await self._send(message)

    async def respond_error(self, status: int, error: str, detail: str) -> None:
        start, body = json_error(status, error, detail, self.limit_headers)
        await self.send(start)
        await self.send(body)

    async def respond_oauth_error(self, status: int, error: str, description: str) -> None:
        start, body = oauth_error(status, error, description)
        await self.send(start)
        await self.send(body)

    async def run(self) -> None:
        headers: Headers = self.scope["headers"]
        token = request_id_var.set(self.request_id)
        try:
            if await self._admit(headers):
                response = await self._open_upstream(headers)
                if response is not None:
                    await self._relay(response)
        except BodyTooLarge as exc:
            await self.respond_error(413, "request_too_large", f"request body exceeds {exc.limit} bytes")
        except ExchangeAborted:
            self.status = self.status or 499  # nginx's "client closed request"
        except Exception as exc:
            await self._fail(exc)
        finally:
            request_id_var.reset(token)
            self._record()

    async def _fail(self, exc: Exception) -> None:
        """An exception nothing above answers (a bug): a 500 if the response has not started, and
        recorded as 500 in every case (the request failed here; the client did not go away).

        One log line: the exception's type, never its message, which can quote request data.
        """
        log.error(
            "unexpected %s in the exchange of request %s (%s, route %s)",
            exception_type_name(exc),
            self.request_id,
            self.scope["method"][:16],
            self.route.name,
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("where: %s", describe_exception(exc))
        if not self.status:
            await self.respond_error(500, "internal_error", "internal error")
        self.status = 500

    async def _admit(self, headers: Headers) -> bool:
        """What is decided before forwarding: the path, the declared length, the rate limits
        (reading the login form for its username and client id).

        False once the request has been answered; BodyTooLarge for a declared length over the limit.
        """
        state = self.state
        scope = self.scope
        max_body = state.settings.max_request_body_bytes
        if has_dot_segments(scope["path"]):
            # Upstreams do not resolve "..", but a path that escapes its route prefix is never legitimate.
            await self.respond_error(400, "bad_path", "path must not contain '.' or '..' segments")
            return False
        target = self.route.upstream_path(scope.get("raw_path") or scope["path"].encode())
        if target is None:
            detail = f"the route prefix {self.route.prefix} must not be percent-encoded"
            await self.respond_error(400, "bad_path", detail)
            return False
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        self.target = target.decode("latin-1")
        length_header = header(headers, b"content-length")
        if length_header is not None:
            try:
                length = int(length_header)
            except ValueError:
                await self.respond_error(400, "bad_request", "Content-Length is not a number")
                return False
            if length > max_body:
                raise BodyTooLarge(max_body)

        self.identity = identity = await state.identity.resolve(header(headers, b"authorization"))
        buckets = identity_buckets(state.policies, identity.sub, identity.scopes, self.ip)
        if scope["method"] == "POST" and scope["path"] == state.settings.login_path:
            try:
                self.body = await self._read_body(min(max_body, MAX_LOGIN_BODY))
            except BodyTooLarge:
                await self.respond_error(413, "request_too_large", f"login body exceeds {MAX_LOGIN_BODY} bytes")
                return False
            try:
                login = await read_login(
                    [v for k, v in headers if k == b"content-type"], header(headers, b"authorization"), self.body
                )
            except BadLoginRequest as exc:
                # Refused before auth: a body the guard and auth could read differently.
                await self.respond_oauth_error(400, "invalid_request", exc.description)
                return False
            buckets += login_buckets(state.policies, self.ip, login.username, login.client_id)

        limiting = state.settings.rate_limit_enabled
        # The token endpoint takes no bearer token: a revoked one sent along must not block a new login.
        checked = None if scope["path"] == state.settings.login_path else identity
        # Revocation is checked by the rate-limit script (same round trip), so also with rate limiting off.
        if limiting or (checked is not None and checked.issued_at is not None):
            try:
                decision = await state.limiter.decide(buckets if limiting else [], checked)
            except RateLimiterDown:
                await self.respond_error(503, "rate_limiter_unavailable", "rate limiting is unavailable; try later")
                return False
            if decision is not None and decision.revoked:
                # Before forwarding: inference would accept the token until it expires. No bucket was charged.
                start, body = json_error(401, "invalid_token", "token revoked", [(b"www-authenticate", TOKEN_REVOKED)])
                await self.send(start)
                await self.send(body)
                return False
            if decision is not None and decision.policy is not None:
                self.limit_headers = decision.headers()
                if not decision.allowed:
                    self.limited = True
                    state.metrics.rate_limited.labels(self.route.name).inc()
                    await self.respond_error(
                        429,
                        "rate_limited",
                        f"rate limit {decision.policy.name} exceeded; retry after {decision.retry_after_seconds}s",
                    )
                    return False
        return True

    async def _read_body(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ExchangeAborted
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self.request_bytes = size
        return b"".join(chunks)

    async def _stream_body(self) -> AsyncIterator[bytes]:
        limit = self.state.settings.max_request_body_bytes
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ExchangeAborted
            chunk = message.get("body", b"")
            if chunk:
                self.request_bytes += len(chunk)
                if self.request_bytes > limit:
                    self.body_too_large = True
                    raise BodyTooLarge(limit)
                self.body_started = True
                yield chunk
            if not message.get("more_body", False):
                return

    async def _open_upstream(self, headers: Headers) -> httpx.Response | None:
        """The response of the first upstream that answers; None once an error has been answered.

        BodyTooLarge when the body passes the limit, however the transport reports it.
        """
        state = self.state
        route = self.route
        scope = self.scope
        candidates = route.candidates(time.monotonic())
        if not candidates:
            state.metrics.upstream_errors.labels(route.name, "no_healthy_upstream").inc()
            await self.respond_error(503, "no_healthy_upstream", f"no healthy upstream for {route.prefix}")
            return None
        declared = header(headers, b"content-length")
        if self.body is None and declared is not None and 0 < int(declared) <= SMALL_BODY:
            self.body = await self._read_body(state.settings.max_request_body_bytes)
        has_body = (
            self.body is not None or declared not in (None, b"0") or (header(headers, b"transfer-encoding") is not None)
        )
        out_headers = upstream_headers(
            headers,
            peer=self.peer,
            scheme=scope.get("scheme", "http"),
            request_id=self.request_id,
            trusted=state.trusted,
        )
        for upstream in candidates:
            self.upstream = upstream.url
            content = None
            if has_body:
                content = self.body if self.body is not None else self._stream_body()
            request = httpx.Request(
                scope["method"],
                upstream.url + self.target,
                headers=out_headers,
                content=content,
                extensions=dict(upstream.extensions),
            )
            try:
                return await upstream.transport.handle_async_request(request)
            except httpx.HTTPError as exc:
                if self.body_too_large:
                    # The transport failed because the body stream stopped at the limit.
                    raise BodyTooLarge(state.settings.max_request_body_bytes) from None
                if isinstance(exc, httpx.ConnectError):
                    state.pool.mark_down(upstream)
                    state.metrics.upstream_errors.labels(route.name, "connect").inc()
                    log.warning("upstream %s refused or unreachable: %s", upstream.url, exc)
                    if self.body_started:
                        break  # the body is spent: cannot try another upstream
                    continue
                if isinstance(exc, httpx.LocalProtocolError):
                    # h11 will not send the request as received (a header value RFC 9110 forbids):
                    # the client's error, not the upstream's. Its message quotes the value: not logged.
                    await self.respond_error(400, "bad_header", unforwardable_header_detail(headers))
                    return None
                if isinstance(exc, httpx.TimeoutException):
                    state.metrics.upstream_errors.labels(route.name, "timeout").inc()
                    await self.respond_error(504, "upstream_timeout", f"upstream for {route.prefix} timed out")
                    return None
                state.metrics.upstream_errors.labels(route.name, "protocol").inc()
                log.warning("upstream %s failed: %r", upstream.url, exc)
                detail = f"upstream for {route.prefix} failed: {type(exc).__name__}"
                await self.respond_error(502, "bad_gateway", detail)
                return None
        await self.respond_error(502, "upstream_unreachable", f"upstream for {route.prefix} refused the connection")
        return None

    async def _relay(self, response: httpx.Response) -> None:
        # With a declared length the chunk that completes it also ends the ASGI body: one
        # send fewer per response, and a small one goes out as start + one body message.
        declared = response.headers.get("content-length")
        length = int(declared) if declared is not None and declared.isdigit() else -1
        if self.scope["method"] == "HEAD" or response.status_code in (204, 304):
            length = -1  # the header describes a body that is not sent
        try:
            headers = public_url_headers(
                response_headers(response.headers.raw), f"{self.upstream}{self.target}", self.state.pool.routes
            )
        except InternalAddress:
            await response.aclose()
            self.state.metrics.upstream_errors.labels(self.route.name, "internal_address").inc()
            # Not the URL itself: it may quote the request's query.
            log.warning("upstream %s answered with a URL to an internal address no route reaches", self.upstream)
            await self.respond_error(
                502, "bad_gateway", f"upstream for {self.route.prefix} pointed at an internal address"
            )
            return
        try:
            await self.send(
                {"type": "http.response.start", "status": response.status_code, "headers": headers + self.limit_headers}
            )
            ended = False
            async for chunk in response.aiter_raw():
                if ended:
                    continue  # h11 frames by Content-Length, so nothing arrives past the end
                self.response_bytes += len(chunk)
                ended = self.response_bytes == length
                await self.send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            if not ended:
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as exc:
            # Headers are gone already: all we can do is cut the response short, which the
            # client sees as a truncated body rather than a complete wrong one.
            self.state.metrics.upstream_errors.labels(self.route.name, "mid_response").inc()
            log.warning("upstream %s failed mid-response: %r", self.upstream, exc)
            raise ExchangeAborted from None
        finally:
            await response.aclose()

    def _record(self) -> None:
        state = self.state
        elapsed = time.perf_counter() - self.started
        scope = self.scope
        method = scope["method"]
        # Every path sets the status (499 only when the client went away); 0 is a cancelled exchange.
        status = self.status or 500
        metrics = state.metrics
        metrics.requests.labels(self.route.name, method if method in _KNOWN_METHODS else "OTHER", str(status)).inc()
        metrics.latency.labels(self.route.name).observe(elapsed)
        user_agent = header(scope["headers"], b"user-agent")
        state.writer.submit(
            LogRow(
                ts=self.ts,
                request_id=self.request_id,
                method=method[:16],
                # Client text, as it came but storable: a NUL (from %00) fails the whole COPY batch.
                path=storable(scope["path"][:2048]),
                route=self.route.name,
                status=status,
                latency_ms=elapsed * 1000,
                client_ip=self.ip,
                user_sub=self.identity.sub if self.identity else None,
                user_agent=storable(user_agent.decode("latin-1")[:512]) if user_agent else None,
                request_bytes=self.request_bytes,
                response_bytes=self.response_bytes,
                upstream=self.upstream,
                rate_limited=self.limited,
            )
        )
