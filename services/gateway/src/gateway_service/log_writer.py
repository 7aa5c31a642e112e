"""Background writer: a bounded queue drained into Postgres in batches with COPY.

Requests only ever ``put_nowait``; the database is never on the request path. When
Postgres is down the writer keeps its batch and retries with backoff; rows are dropped
only when the queue is full, and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from modelgate_shared.db import asyncpg_dsn

from .metrics import GatewayMetrics
from .request_log import COLUMNS, LogRow, record

log = logging.getLogger(__name__)


class LogWriter:
    def __init__(
        self,
        database_url: str,
        metrics: GatewayMetrics,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        max_backoff: float,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._metrics = metrics
        self._queue: asyncio.Queue[LogRow] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_backoff = max_backoff
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[LogRow] = []
        self._closing = False
        # The wait for the next row, while there is one: close() expires it so the last
        # batch is written at once, however long the flush interval.
        self._wait: asyncio.Timeout | None = None
        self.dropped = 0
        self._last_drop_warning = 0.0
        self._failing_since: float | None = None
        self._last_failure_warning = 0.0

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._pending)

    def submit(self, row: LogRow) -> None:
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            self._metrics.log_rows_dropped.inc()
            now = time.monotonic()
            if now - self._last_drop_warning > 10:
                self._last_drop_warning = now
                log.warning("request log queue full: %d rows dropped so far", self.dropped)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a flush budget, not a cancel scope
        """Flush everything queued (up to ``timeout`` seconds), then stop."""
        self._closing = True
        wait = self._wait
        if wait is not None and not wait.expired():
            wait.reschedule(asyncio.get_running_loop().time())
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.error("request log flush timed out; %d rows not written", self.depth)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None

    async def _next_batch(self) -> None:
        """Fill ``_pending`` from the queue: wait for one row, then take what arrives within the interval."""
        if not self._pending:
            if self._closing and self._queue.empty():
                return
            first = await self._get(self._flush_interval)
            if first is None:
                return
            self._pending.append(first)
        deadline = time.monotonic() + (0 if self._closing else self._flush_interval)
        while len(self._pending) < self._batch_size:
            try:
                self._pending.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            row = await self._get(remaining)
            if row is None:
                break
            self._pending.append(row)

    async def _get(self, seconds: float) -> LogRow | None:
        """The next row within ``seconds``; None when none comes or close() begins."""
        try:
            async with asyncio.timeout(seconds) as self._wait:
                return await self._queue.get()
        except TimeoutError:
            return None
        finally:
            self._wait = None

    async def _write(self, rows: list[LogRow]) -> None:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, timeout=5)
        await self._conn.copy_records_to_table(
            "request_log", records=[record(r) for r in rows], columns=COLUMNS, timeout=30
        )

    def _warn_failure(self, exc: BaseException) -> None:
        # Once when the outage starts, then every 30 s: a retry loop must not flood the log.
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._last_failure_warning < 30:
            return
        self._last_failure_warning = now
        log.warning("request log writes failing (%d rows waiting), retrying: %s", self.depth, exc)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            await self._next_batch()
            if not self._pending:
                if self._closing and self._queue.empty():
                    return
                continue
            try:
                await self._write(self._pending)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self._metrics.log_write_errors.inc()
                self._warn_failure(exc)
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.terminate()
                    self._conn = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self._failing_since is not None:
                log.info("request log writes recovered after %.1fs", time.monotonic() - self._failing_since)
                self._failing_since = None
            backoff = 0.05
            self._metrics.log_rows_written.inc(len(self._pending))
            self._pending = []
