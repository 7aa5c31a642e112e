"""Load: 200 connections for 30 s of mixed predict / batch / metadata requests. Zero unexpected
errors, one request-log row per completed request; p50/p99 are recorded, never asserted."""

from __future__ import annotations

import asyncio

import httpx

from .conftest import CLIENT_KEEPALIVE_SECONDS, Accounts, Report
from .fault_stack import FaultStack, exactly_one_row_each
from .traffic import Call, Traffic, batch_csv, counts_by_call, metadata, percentile, predict

CONNECTIONS = 200
LOAD_SECONDS = 30
BATCH_ROWS = 50


def mix(token: str) -> list[Call]:
    """Half single predictions, a fifth CSV batches, the rest metadata (V1 and V2)."""
    return [*[predict(token)] * 5, *[batch_csv(token, BATCH_ROWS)] * 2, *[metadata(token)] * 2, metadata(token, "v2")]


async def test_200_connections_for_30_seconds(faults: FaultStack, accounts: Accounts, report: Report) -> None:
    limits = httpx.Limits(
        max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS, keepalive_expiry=CLIENT_KEEPALIVE_SECONDS
    )
    async with httpx.AsyncClient(base_url=faults.gateway_url, timeout=120, limits=limits) as client:
        traffic = Traffic(
            client, [c for t in accounts.tokens for c in mix(t)], prefix="load", workers=CONNECTIONS, pause=0
        ).start()
        await asyncio.sleep(LOAD_SECONDS)  # the load's length, not a synchronisation
        outcomes = await traffic.stop()

    completed = [o.request_id for o in outcomes if o.status is not None]
    rows = await faults.settled_log_counts("load", completed)
    span = max(o.done for o in outcomes) - min(o.sent for o in outcomes)
    latencies = {name: [o.latency for o in outcomes if o.call == name] for name in sorted({o.call for o in outcomes})}
    latencies["all"] = [o.latency for o in outcomes]
    report.record(
        "load: 200 connections, 30 s, mixed",
        expected="every request 200; exactly one request_log row per completed request",
        requests=counts_by_call(outcomes),
        requests_per_second=round(len(outcomes) / span, 1),
        latency_ms_p50_p99={
            name: [round(percentile(v, 0.5) * 1000, 1), round(percentile(v, 0.99) * 1000, 1)]
            for name, v in latencies.items()
        },
        rows_for_these_ids=sum(rows.values()),
    )
    assert {o.label for o in outcomes} == {"200"}, counts_by_call(outcomes)
    sent = [o.request_id for o in outcomes]
    assert not exactly_one_row_each(rows, completed, sent), exactly_one_row_each(rows, completed, sent)
