"""A TCP proxy that can be cut and restored: a dependency that goes away and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future

from .servers import free_port


class TcpProxy:
    def __init__(self, target_host: str | None, target_port: int | None, target_unix: str | None = None) -> None:
        self.port = free_port()
        self._target = (target_host, target_port, target_unix)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, coro) -> None:  # type: ignore[no-untyped-def]
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host, port, unix = self._target
        try:
            if unix:
                up_r, up_w = await asyncio.open_unix_connection(unix)
            else:
                up_r, up_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, up_w}
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        self._writers -= {client_w, up_w}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a dead server: connections drop, not close politely
        self._writers.clear()

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self.stop()
        self._call(self._cancel_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@contextlib.contextmanager
def tcp_proxy(target_host: str | None, target_port: int | None, target_unix: str | None = None) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port, target_unix)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
