"""The upstream hop's transport: httpx's transport API over httpcore's HTTP/1.1, on plain asyncio.

httpx on asyncio normally reaches the socket through anyio streams and httpcore's
connection pool; on the proxy's hot path those layers (cancel scopes per read and
write, a scan of every pooled connection twice per request, each idle socket polled
with a syscall to ask whether it is readable) cost more CPU than the rest of the
exchange. Here:

- :class:`AsyncioBackend` implements httpcore's public ``AsyncNetworkBackend`` on an
  ``asyncio.Protocol``: a read or write is a future and a timer, and "is this idle
  connection readable" is a flag the protocol keeps;
- :class:`_ConnectionPool` keeps idle connections on a stack: O(1) per request (measured
  against ``httpcore.AsyncConnectionPool`` on the same backend by ``bench/transport_pool.py``:
  bench/README.md, "Upstream connection pool"); a request that meets the upstream's close
  of a reused connection before any answer is sent again, once, on a new connection;
- httpcore's ``AsyncHTTP11Connection`` still speaks HTTP/1.1 (h11), and
  :class:`UpstreamTransport` is an ordinary ``httpx.AsyncBaseTransport`` raising httpx's
  exceptions, so callers see httpx and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, cast

import httpcore
import httpx

# Request headers and a small body leave in one segment (one syscall here, one read in the
# upstream) instead of one per h11 event; anything larger goes out as soon as it is written.
COALESCE_BYTES = 64 * 1024
# Stop reading from an upstream that sends faster than the client takes the response.
READ_HIGH_WATER = 256 * 1024

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class _StreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.received = 0  # bytes that arrived, ever: did an answer start? (the pool's retry)
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.read_paused = False
        self.write_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        self.received += len(data)
        if self.buffered > READ_HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self.error = exc
        self._wake_reader()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _wait(waiter: asyncio.Future[None], seconds: float | None) -> None:
    """Await ``waiter``; TimeoutError after ``seconds`` (a bare timer: no task, no cancel scope)."""
    if seconds is None:
        await waiter
        return
    timer = asyncio.get_running_loop().call_later(seconds, _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    @property
    def bytes_received(self) -> int:
        """Bytes that have arrived on this connection so far, read or not."""
        return self._protocol.received

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's interface)
        self._flush()
        p = self._protocol
        while True:
            if p.chunks:
                chunk = p.chunks.popleft()
                if len(chunk) > max_bytes:
                    p.chunks.appendleft(chunk[max_bytes:])
                    chunk = chunk[:max_bytes]
                p.buffered -= len(chunk)
                if p.read_paused and p.buffered <= READ_HIGH_WATER // 4:
                    p.read_paused = False
                    self._transport.resume_reading()
                return chunk
            if p.error is not None:
                raise httpcore.ReadError(str(p.error) or type(p.error).__name__)
            if p.eof:
                return b""
            waiter = asyncio.get_running_loop().create_future()
            p.read_waiter = waiter
            try:
                await _wait(waiter, timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading from the upstream") from None
            finally:
                p.read_waiter = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's interface)
        if not buffer:
            return
        if self._protocol.lost or self._transport.is_closing():
            raise httpcore.WriteError("the upstream closed the connection")
        self._pending.append(buffer)
        self._pending_bytes += len(buffer)
        if self._pending_bytes < COALESCE_BYTES:
            return  # sent with the next write or before the first read
        self._flush()
        await self._drain(timeout)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if self._protocol.lost or self._transport.is_closing():
            # Reported by the read that follows, like a write the peer never saw.
            return
        self._transport.write(data)

    async def _drain(self, seconds: float | None) -> None:
        p = self._protocol
        if not p.write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        p.drain_waiter = waiter
        try:
            await _wait(waiter, seconds)
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing to the upstream") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from None
        finally:
            p.drain_waiter = None

    async def aclose(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
        if transport is None:  # the peer closed the connection during the handshake
            raise httpcore.ConnectError("the upstream closed the connection during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of idle pooled connections: anything readable on an idle
            # HTTP/1.1 connection means the upstream closed it (or misbehaved).
            p = self._protocol
            return bool(p.chunks) or p.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await self._connect(
            loop.create_connection(_StreamProtocol, host, port, local_addr=local), timeout, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        return await self._connect(loop.create_unix_connection(_StreamProtocol, path), timeout, socket_options)

    async def _connect(
        self,
        connecting: Any,
        seconds: float | None,
        socket_options: Iterable[SocketOption] | None,
    ) -> AsyncioStream:
        try:
            async with asyncio.timeout(seconds):
                transport, protocol = await connecting
        except TimeoutError:
            raise httpcore.ConnectTimeout("timed out connecting to the upstream") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
        sock: socket.socket | None = transport.get_extra_info("socket")
        if socket_options and sock is not None:
            try:
                for option in socket_options:
                    sock.setsockopt(*option)
            except OSError as exc:
                transport.close()
                raise httpcore.ConnectError(str(exc)) from None
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# httpcore's errors as the httpx ones the proxy catches; the most specific match wins.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _as_httpx_error(exc: Exception) -> Exception:
    for core, mapped in _ERRORS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except (
        httpcore.TimeoutException,
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.UnsupportedProtocol,
    ) as e:
        raise _as_httpx_error(e) from e


# Errors of a request whose connection the upstream closed (end of file or reset, on write or
# read). Timeouts are not among them: an upstream that is slow to answer is not a closed one.
_CLOSED_CONNECTION_ERRORS = (httpcore.ReadError, httpcore.WriteError, httpcore.RemoteProtocolError)

# uvicorn (every upstream here) closes the connection when an exception escapes the app, and
# under Starlette/FastAPI that happens after the app's 500 has gone out complete and without
# "Connection: close" (ServerErrorMiddleware answers, then re-raises): the FIN comes about 1 ms
# later, once the traceback is logged, with any request sent meanwhile unread (the upstream
# then resets the connection). So a connection that answered 500 is closed, not reused: one
# reconnect instead of a request sent into a closing connection. Only 500: 502-504 are what
# upstreams answer under overload or behind their own proxies, and they keep the connection.
_CLOSES_AFTER_STATUS = 500


class _StreamedBody:
    """A request body that is not bytes (read from the client as it is sent): whether sending
    it has begun, after which it cannot be sent again."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for part in self._stream:
            yield part


def _replayable(body: object) -> bool:
    # Bytes (httpx.ByteStream: no body, or one the proxy read whole) can be sent again; a streamed
    # body only if none of it has been taken from the client yet.
    return isinstance(body, httpx.ByteStream) or (isinstance(body, _StreamedBody) and not body.started)


class _Connection(httpcore.AsyncHTTP11Connection):
    """httpcore's HTTP/1.1 connection, its stream at hand: the retry asks what has arrived."""

    def __init__(self, origin: httpcore.Origin, stream: AsyncioStream, keepalive_expiry: float | None) -> None:
        super().__init__(origin, stream, keepalive_expiry=keepalive_expiry)
        self.asyncio_stream = stream  # (``stream`` is httpcore's name for a method)


class _ConnectionPool:
    """HTTP/1.1 keep-alive connections to one or a few origins, O(1) per request.

    httpcore's own pool (1.0.9) rescans every pooled connection twice per request, and for
    each idle one counts the whole list again (quadratic in the connections held), with anyio
    events, locks and cancel scopes around it: bench/README.md, "Upstream connection pool",
    has what that costs. Here an idle
    connection is popped from a stack and pushed back when its response is closed. The most
    recently used connection is reused first (httpcore takes the first idle one in the order
    they were opened), so the ones at the bottom of the stack, idle longest and the likeliest
    to have been closed by the upstream's own keep-alive timeout, age out and are closed.

    A request that fails on a reused connection because the upstream closed it, before any byte
    of an answer arrived and while its body can still be sent again, is sent once more on a new
    connection (:meth:`handle_async_request` says when and why). A connection that answered 500
    is closed rather than reused (``_CLOSES_AFTER_STATUS``).

    Interface: httpcore's ``handle_async_request``, so ``httpcore.AsyncConnectionPool`` can
    stand in for it (the bench does). ``max_keepalive_connections`` is not applied, and idle
    connections to one origin are not closed to make room for another (each gateway upstream
    has its own transport, so one origin).
    """

    def __init__(self, ssl_context: ssl.SSLContext, max_connections: int, keepalive_expiry: float | None) -> None:
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._backend = AsyncioBackend()
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self.retries = 0

    @property
    def open_connections(self) -> int:
        return self._open

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on an idle connection (else a new one); once more, on a new one, if
        the upstream had closed the reused connection under it.

        Either side may close an idle keep-alive connection at any time (RFC 9112 9.3.1), so a
        request can meet a close already on its way (the upstream's keep-alive timeout, uvicorn's
        close after a 500). Sent again only if: the connection was reused (a new one that fails
        is a real failure, and retrying it could loop); it failed by closing (end of file or
        reset, never a timeout); not one byte of an answer had arrived; and the body can be sent
        again (bytes, or a stream not yet started). Once: a failed retry is not retried (RFC 9110
        9.2.2).

        Any method, POST too: servers close keep-alive connections between requests, so a close
        before any answer means the upstream did not act on the request, unless it died in the
        middle of it. RFC 9110 9.2.2 calls that guess "riskier" and says a proxy MUST NOT retry
        non-idempotent requests; Go's net/http retries those only if nothing was written, urllib3
        only idempotent methods. Accepted here (issue 10): the upstreams are the gateway's own
        services, and the alternative is a 502 for a request they almost surely never saw.
        """
        origin = request.url.origin
        connection, reused = await self._acquire(request, origin)
        while True:
            received = connection.asyncio_stream.bytes_received
            try:
                response = await connection.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                self._release(connection, origin)
                connection, reused = await self._acquire(request, origin)
                continue
            except _CLOSED_CONNECTION_ERRORS:
                answered = connection.asyncio_stream.bytes_received != received
                if not reused or answered or not _replayable(request.stream):
                    self._release(connection, origin)
                    raise
                # httpcore has closed the connection; its slot goes to the new one (no pool wait).
                if not connection.is_closed():
                    self._forget(connection)
                self.retries += 1
                connection, reused = await self._connect_in_slot(request, origin), False
                continue
            except BaseException:
                self._release(connection, origin)
                raise
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_PooledStream(
                    response.stream, self, connection, origin, reuse=response.status != _CLOSES_AFTER_STATUS
                ),
                extensions=response.extensions,
            )

    async def _acquire(self, request: httpcore.Request, origin: httpcore.Origin) -> tuple[_Connection, bool]:
        """A connection for ``request`` and whether it is a reused one."""
        if self._closed:
            raise httpcore.ConnectError("the connection pool is closed")
        idle = self._idle.get((origin.scheme, origin.host, origin.port))
        while idle:
            connection = idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection, True
            self._open -= 1
            await connection.aclose()
        if self._open >= self._max_connections:
            await self._wait_for_room(request.extensions.get("timeout", {}).get("pool"))
            return await self._acquire(request, origin)
        self._open += 1
        return await self._connect_in_slot(request, origin), False

    async def _connect_in_slot(self, request: httpcore.Request, origin: httpcore.Origin) -> _Connection:
        """A new connection in a slot already counted in ``_open``; the slot is freed if connecting fails."""
        timeouts = request.extensions.get("timeout", {})
        try:
            stream = await self._connect(origin, timeouts.get("connect"), request.extensions.get("sni_hostname"))
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        return _Connection(origin, stream, self._keepalive_expiry)

    async def _connect(self, origin: httpcore.Origin, seconds: float | None, sni_hostname: str | None) -> AsyncioStream:
        host = origin.host.decode("ascii")
        stream = await self._backend.connect_tcp(host, origin.port, timeout=seconds)
        if origin.scheme == b"https":
            stream = await stream.start_tls(self._ssl_context, server_hostname=sni_hostname or host, timeout=seconds)
        return stream

    async def _wait_for_room(self, seconds: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await _wait(waiter, seconds)
        except TimeoutError:
            raise httpcore.PoolTimeout("no upstream connection became free in time") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()  # woken, then cancelled: hand the free slot to the next waiter
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, connection: _Connection, origin: httpcore.Origin, reuse: bool = True) -> None:
        """Take back a connection whose exchange is over: keep it if reusable, else forget it."""
        if reuse and connection.is_idle() and not self._closed:
            idle = self._idle.setdefault((origin.scheme, origin.host, origin.port), [])
            idle.append(connection)
            self._close_expired(idle)
        elif connection.is_closed():
            self._open -= 1
        else:
            # Not to be reused, or neither idle nor closed (an exchange cut short): close it.
            self._open -= 1
            self._forget(connection)
        self._wake_one()

    def _close_expired(self, idle: list[_Connection]) -> None:
        # The oldest idle connection sits at the bottom; one check per release keeps the stack clean.
        if len(idle) > 1 and idle[0].has_expired():
            self._open -= 1
            self._forget(idle.pop(0))

    @staticmethod
    def _forget(connection: _Connection) -> None:
        # Closing an HTTP/1.1 connection is synchronous underneath (transport.close()); run it
        # as a task only so this bookkeeping stays a plain function.
        asyncio.get_running_loop().create_task(connection.aclose())

    async def aclose(self) -> None:
        self._closed = True
        connections = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        self._open -= len(connections)
        for connection in connections:
            await connection.aclose()


class _PooledStream:
    """The response body; closing it hands the connection back to the pool."""

    def __init__(
        self,
        stream: Any,
        pool: _ConnectionPool,
        connection: _Connection,
        origin: httpcore.Origin,
        reuse: bool,
    ) -> None:
        self._stream = stream
        self._origin = origin
        self._pool = pool
        self._connection = connection
        self._reuse = reuse
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            await self._stream.aclose()
        finally:
            self._pool._release(self._connection, self._origin, self._reuse)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._stream.aclose()


class UpstreamTransport(httpx.AsyncBaseTransport):
    """httpx transport: HTTP/1.1 connections pooled by :class:`_ConnectionPool`, on plain asyncio.

    ``limits.max_keepalive_connections`` is not used: every connection the pool may open
    (``max_connections``) may also stay open idle, until ``keepalive_expiry``.
    """

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = _ConnectionPool(
            ssl_context or httpx.create_ssl_context(),
            max_connections=sys.maxsize if limits.max_connections is None else limits.max_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )

    @property
    def open_connections(self) -> int:
        return self._pool.open_connections

    @property
    def retries(self) -> int:
        """Requests sent again on a new connection after the upstream closed a reused one."""
        return self._pool.retries

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        body = request.stream
        # A streamed body is wrapped: the pool must know whether it has started before it resends.
        content: AsyncIterable[bytes] = (
            body if isinstance(body, httpx.ByteStream) else _StreamedBody(cast(AsyncIterable[bytes], body))
        )
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=content,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
