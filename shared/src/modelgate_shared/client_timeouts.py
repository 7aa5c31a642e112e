"""Bounds on how long a client may take to send its request: uvicorn's HTTP protocol with deadlines.

uvicorn times only the idle gap between two requests (``--timeout-keep-alive``): a connection
that is opened and never sends a byte, or that drips its request headers or stops its body
half-way, is held for as long as the client likes (slowloris). Every service runs uvicorn with
``--http modelgate_shared.client_timeouts:ClientTimeoutProtocol`` (the launcher and the
Dockerfiles), which adds two deadlines, read from the environment of each service process:

- ``MODELGATE_HEADER_TIMEOUT_SECONDS`` (10): from the moment a connection opens, or the first
  byte of a later request on it, until the request headers are complete. A total, not an idle
  gap, so dripping a byte at a time does not extend it. On expiry: 408 when part of a request
  had arrived, and the connection is closed.
- ``MODELGATE_BODY_TIMEOUT_SECONDS`` (30): the longest gap between two pieces of a request body
  while the server is waiting for them (as nginx's ``client_body_timeout``). Time the server
  itself is behind (reading paused, or unread body still buffered, or a ``100 Continue`` not yet
  sent) does not count. On expiry: 408 if no response has started, the app's ``receive()``
  answers ``http.disconnect``, and the connection is closed.

What remains (a body sent at a byte every few seconds, slow readers of responses, connection
counts per client) is the front proxy's part: see the README.

The timers cost nothing for requests that arrive whole: one per connection for its first
headers, and otherwise only when a read ends with the headers or the body unfinished.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .settings import load_settings

# For uvicorn's --http (the launcher and the Dockerfiles spell it out).
HTTP_PROTOCOL = "modelgate_shared.client_timeouts:ClientTimeoutProtocol"

log = logging.getLogger("uvicorn.error")


class ClientTimeouts(BaseSettings):
    """``MODELGATE_HEADER_TIMEOUT_SECONDS`` and ``MODELGATE_BODY_TIMEOUT_SECONDS``, the same for every service."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_", extra="ignore", frozen=True)

    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)


def request_timeout_response(detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = detail.encode("ascii")
    lines = [STATUS_LINE[408]]
    lines.extend(name + b": " + value + b"\r\n" for name, value in default_headers)
    lines += [
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"connection: close\r\n",
        b"\r\n",
        body,
    ]
    return b"".join(lines)


class ClientTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (what ``--http auto`` picks with ``uvicorn[standard]``) plus
    the header and body deadlines of :class:`ClientTimeouts`.

    The settings are read when uvicorn imports the class, so a bad value stops the service at
    start (exit 2, naming the variable). A subclass may set ``timeouts`` itself (tests).
    """

    timeouts: ClassVar[ClientTimeouts] = load_settings(ClientTimeouts)

    # Set in connection_made (after uvicorn's __init__, which takes arguments of its own).
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    # From the connection's start, or a request's first byte, until its headers are complete.
    _awaiting_headers = False
    # Some bytes of the request whose headers are awaited have arrived (then a 408 is owed).
    _request_begun = False
    # Headers complete, the body not yet (a request without a body completes at once).
    _body_pending = False
    _body_progress = 0.0

    # -- uvicorn's protocol interface ------------------------------------------------

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._awaiting_headers = True
        self._header_timer = self.loop.call_later(self.timeouts.header_timeout_seconds, self._header_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        # Arm a timer only when this read left a request unfinished: most requests arrive whole.
        if self._awaiting_headers and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.timeouts.header_timeout_seconds, self._header_deadline)
        if self._body_pending and self._body_timer is None:
            self._body_progress = self.loop.time()
            self._body_timer = self.loop.call_later(self.timeouts.body_timeout_seconds, self._body_deadline)

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._request_begun = True

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._request_begun = False
        self._cancel_header_timer()
        super().on_headers_complete()
        # An upgrade uvicorn accepts hands the connection to another protocol: no body to wait
        # for here. Any other Upgrade header is a request like the rest, body deadline included.
        self._body_pending = not (self.parser.should_upgrade() and self._should_upgrade())

    def on_body(self, body: bytes) -> None:
        self._body_progress = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        # Before uvicorn's own handler, which returns early once the response is complete.
        self._body_pending = False
        self._cancel_body_timer()
        super().on_message_complete()
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.response_complete
            and self.timeout_keep_alive_task is None
            and not self.pipeline
            and not self.transport.is_closing()
        ):
            # The app answered before the body was in (a 413 or 429 by its headers). The body's
            # bytes cancelled uvicorn's keep-alive timer and nothing re-arms it: the connection
            # would stay open, idle, for ever.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # -- the deadlines ---------------------------------------------------------------

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A pipelined request stalled behind a response still being sent: let that response
            # finish, then close (uvicorn closes after a response that is not keep-alive).
            cycle.keep_alive = False
            return
        log.debug("%s: request headers not received within %ss; closing", self._peer(), self._header_limit())
        self._expire(f"request headers not received within {self._header_limit()}s", respond=self._request_begun)

    def _body_deadline(self) -> None:
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        cycle = self.cycle
        now = self.loop.time()
        if self.flow.read_paused or (
            cycle is not None and not cycle.response_complete and (cycle.body or cycle.waiting_for_100_continue)
        ):
            # The server is behind, not the client: it has a whole timeout once the server catches up.
            self._body_progress = now
        remaining = self._body_progress + self.timeouts.body_timeout_seconds - now
        if remaining > 0:
            self._body_timer = self.loop.call_later(remaining, self._body_deadline)
            return
        limit = f"{self.timeouts.body_timeout_seconds:g}"
        log.info("%s: request body stalled for %ss; closing", self._peer(), limit)
        self._expire(
            f"request body not received within {limit}s", respond=cycle is not None and not cycle.response_started
        )

    def _expire(self, detail: str, *, respond: bool) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app's receive() now answers http.disconnect and its send() writes nothing,
            # so our 408 is the only response on the wire.
            cycle.disconnected = True
            cycle.message_event.set()
        if respond:
            self.transport.write(request_timeout_response(detail, self.server_state.default_headers))
        self.transport.close()

    def _header_limit(self) -> str:
        return f"{self.timeouts.header_timeout_seconds:g}"

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"
