"""``GET /metrics`` on a port of its own (``MODELGATE_GATEWAY_METRICS_PORT``), for Prometheus.

The usual Prometheus arrangement (an exporter's ``--metrics-port``, prometheus_client's
``start_http_server``): the metrics are served apart from the API, without authentication,
on an address only operators and the scraper reach. Here it is a small asyncio server in the
gateway's own event loop (no thread, no second uvicorn), answering one request per
connection, with a deadline on the whole exchange and a cap on connections, so it cannot be
held open any more than the public listener can.

One process per port: with several uvicorn workers only the first could bind it (and each
worker has counters of its own), so the others fail at start naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# Prometheus sends its request at once and reads a few hundred kilobytes at most.
EXCHANGE_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 16
MAX_REQUEST_HEAD = 16 * 1024


class MetricsListenerError(RuntimeError):
    """The metrics port cannot be opened; the message names the setting."""


def _response(status: str, body: bytes, content_type: bytes, extra: bytes = b"", *, head: bool = False) -> bytes:
    lines = [
        b"HTTP/1.1 " + status.encode("ascii") + b"\r\n",
        b"content-type: " + content_type + b"\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"cache-control: no-store\r\n",
        b"connection: close\r\n",
        extra,
        b"\r\n",
    ]
    return b"".join(lines) + (b"" if head else body)


def answer(request_head: bytes, registry: CollectorRegistry) -> bytes:
    """The whole response to one request head (request line and headers)."""
    request_line = request_head.split(b"\r\n", 1)[0]
    parts = request_line.split(b" ")
    text = b"text/plain; charset=utf-8"
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response("400 Bad Request", b"bad request\n", text)
    method, target = parts[0], parts[1]
    if target.split(b"?", 1)[0] != b"/metrics":
        return _response("404 Not Found", b"only /metrics is served here\n", text)
    if method not in (b"GET", b"HEAD"):
        return _response("405 Method Not Allowed", b"GET or HEAD\n", text, b"allow: GET, HEAD\r\n")
    return _response("200 OK", generate_latest(registry), CONTENT_TYPE_LATEST.encode(), head=method == b"HEAD")


class MetricsListener:
    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._exchanges: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_REQUEST_HEAD)
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = " (with several workers only one can hold it: run one worker per gateway process)"
            raise MetricsListenerError(
                f"MODELGATE_GATEWAY_METRICS_PORT: cannot listen on {self.host}:{self.port}: {exc.strerror}{hint}"
            ) from None
        log.info("metrics for Prometheus on %s", self.url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        # Exchanges still open are cut short: at shutdown nobody waits on a scrape.
        for task in self._exchanges:
            task.cancel()
        await asyncio.gather(*self._exchanges, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._exchanges) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._exchanges.add(task)
        try:
            async with asyncio.timeout(EXCHANGE_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(answer(head, self.registry))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that is slow, gone or sends too much gets nothing more
        finally:
            self._exchanges.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
