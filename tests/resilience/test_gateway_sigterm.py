"""The gateway stopped (SIGTERM) under load: the requests in flight complete, and no row is lost.

Deterministically, not probably:
- the gateway runs with a flush interval of an hour and a batch larger than the run, so no row
  can reach Postgres before the signal: ``/metrics`` shows them all queued and none written, and
  only the shutdown's flush can write them;
- some requests are provably inside the gateway when the signal arrives: each is sent with
  ``Expect: 100-continue`` and its body held back; uvicorn answers ``100 Continue`` only when the
  app asks for the body, so once it has come the gateway's proxy is in the middle of that
  request. The bodies go out only after the gateway has closed its listening socket (its
  shutdown has begun), and every one of these requests must still be answered 200.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from urllib.parse import urlsplit

import h11
import httpx

from .conftest import Accounts, Report
from .fault_stack import FaultStack, exactly_one_row_each, metric
from .traffic import PIMA_ROW, Traffic, counts, predict

HELD = 8
# Long enough that nothing is written during the run, so every row waits for the shutdown.
NO_FLUSH = {"MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "3600", "MODELGATE_GATEWAY_LOG_BATCH_SIZE": "1000000"}


class HeldRequest:
    """A POST whose headers the gateway has and whose body it is waiting for (HTTP/1.1 over h11)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.body = body
        self.request_id = f"sigterm-held-{uuid.uuid4().hex}"
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, base_url: str, path: str, token: str, body: bytes) -> HeldRequest:
        url = urlsplit(base_url)
        assert url.hostname is not None and url.port is not None
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        held = cls(reader, writer, body)
        request = h11.Request(
            method="POST",
            target=path,
            headers=[
                ("Host", url.netloc),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Expect", "100-continue"),
                ("Authorization", f"Bearer {token}"),
                ("X-Request-ID", held.request_id),
            ],
        )
        writer.write(held.conn.send(request) or b"")
        await writer.drain()
        event = await held._next_event()
        assert isinstance(event, h11.InformationalResponse) and event.status_code == 100, event
        return held

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await asyncio.wait_for(self.reader.read(65536), 60))
                continue
            return event  # type: ignore[return-value]

    async def finish(self) -> tuple[int, bytes]:
        """Send the body; the response's status and body."""
        self.writer.write(
            (self.conn.send(h11.Data(data=self.body)) or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        )
        await self.writer.drain()
        status, chunks = 0, []
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        self.writer.close()
        return status, b"".join(chunks)


async def listener_closed(base_url: str, within: float = 30) -> None:
    """Until the gateway refuses new connections: its shutdown has begun."""
    url = urlsplit(base_url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection(url.hostname, url.port)
        except OSError:
            return
        writer.close()
        if loop.time() > deadline:
            raise AssertionError(f"the gateway still accepts connections {within:.0f}s after SIGTERM")
        await asyncio.sleep(0.01)


async def test_sigterm_under_load_completes_in_flight_requests_and_loses_no_row(
    faults: FaultStack, accounts: Accounts, client: httpx.AsyncClient, report: Report
) -> None:
    await faults.restart("gateway", NO_FLUSH)
    traffic = Traffic(client, [predict(t) for t in accounts.tokens], prefix="sigterm-load", workers=8, pause=0).start()
    await traffic.wait_for_answers(300)
    body = json.dumps({"instances": [PIMA_ROW]}).encode()
    held = [
        await HeldRequest.open(
            faults.gateway_url, "/v1/models/diabetes/predict", accounts.tokens[i % len(accounts.tokens)], body
        )
        for i in range(HELD)
    ]
    before = await faults.metrics()
    queued, written = metric(before, "gateway_log_queue_depth"), metric(before, "gateway_log_rows_written_total")
    assert written == 0 and queued > 0, (queued, written)
    assert await faults.log_counts("sigterm") == {}

    traffic.stop_sending()  # the requests already sent are still in flight when the signal lands
    faults.send_sigterm("gateway")
    await listener_closed(faults.gateway_url)
    finished = await asyncio.gather(*(h.finish() for h in held))
    outcomes = await traffic.stop()
    exit_code = await faults.exit_code("gateway")
    log = faults.log("gateway")

    rows = await faults.log_counts("sigterm")
    answered = [o.request_id for o in outcomes if o.status is not None] + [h.request_id for h in held]
    sent = [o.request_id for o in outcomes] + [h.request_id for h in held]
    problems = exactly_one_row_each(rows, answered, sent)
    report.record(
        "gateway SIGTERM under load",
        expected="requests in flight at the signal complete (200); every answered request has exactly one row",
        load_requests=counts(outcomes),
        rows_queued_and_rows_written_before_the_signal=[queued, written],
        held_in_flight_at_signal=HELD,
        held_answers=sorted(status for status, _ in finished),
        exit_code=exit_code,
        request_ids_answered=len(answered),
        rows_after_exit=sum(rows.values()),
    )
    assert [status for status, _ in finished] == [200] * HELD, finished
    assert all(json.loads(b)["predictions"] for _, b in finished)
    # A load request that reached the socket but was not yet read when uvicorn closed its idle
    # keep-alive connections gets a reset (HTTP/1.1's keep-alive race; the gateway never saw it):
    # allowed, but only without a row. Every request the gateway read is answered 200.
    unread = [o for o in outcomes if o.status is None]
    assert all(o.request_id not in rows for o in unread), unread
    assert all(o.status == 200 for o in outcomes if o.status is not None), counts(outcomes)
    assert len(unread) <= 8, counts(outcomes)  # at most one per load worker
    assert not problems, problems
    # uvicorn re-raises SIGTERM after a graceful shutdown: -SIGTERM is a clean exit here.
    assert exit_code in (0, -signal.SIGTERM), log[-3000:]
    assert "Application shutdown complete" in log and "flush timed out" not in log, log[-3000:]
