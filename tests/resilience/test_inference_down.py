"""Inference killed and started again: 502/503 while it is away, and the gateway recovers by
itself (it is not restarted)."""

from __future__ import annotations

import asyncio

import httpx

from .conftest import Accounts, Report
from .fault_stack import FaultStack, exactly_one_row_each
from .traffic import Traffic, counts, counts_by_call, metadata, predict

RECOVERED_ANSWERS = 100


async def test_inference_killed_then_restarted_recovers_without_intervention(
    faults: FaultStack, accounts: Accounts, client: httpx.AsyncClient, report: Report
) -> None:
    loop = asyncio.get_running_loop()
    gateway_pid = faults.pid("gateway")
    calls = [*(predict(t) for t in accounts.tokens), metadata(accounts.tokens[0]), metadata(accounts.tokens[1], "v2")]
    traffic = Traffic(client, calls, prefix="inference-down").start()
    await traffic.wait_for_answers(50)

    killed = loop.time()
    await faults.kill("inference")
    await traffic.wait_for_answers(200)
    restarted = loop.time()
    await faults.start("inference")
    ready = loop.time()

    # Recovery: from the first 200 after the restart on, every answer is a 200.
    async def recovered() -> bool:
        later = [o for o in traffic.outcomes if o.sent >= ready]
        first = next((i for i, o in enumerate(later) if o.status == 200), None)
        return first is not None and len(later) - first >= RECOVERED_ANSWERS

    while not await recovered():
        await traffic.wait_for_answers(10)
    outcomes = await traffic.stop()

    before = [o for o in outcomes if o.done < killed]
    away = traffic.between(killed, restarted)
    later = [o for o in outcomes if o.sent >= ready]
    first_200 = next(i for i, o in enumerate(later) if o.status == 200)
    report.record(
        "inference killed and restarted",
        expected="200 before; 502/503 with a JSON body while away; 200 again by itself after the restart",
        before=counts(before),
        while_away=counts_by_call(away),
        after_restart=counts(later),
        inference_ready_after_seconds=round(ready - restarted, 1),
        answers_after_ready_before_first_200=first_200,
        seconds_from_ready_to_first_200=round(later[first_200].done - ready, 2),
        gateway_restarted=faults.pid("gateway") != gateway_pid,
    )
    assert counts(before) == {"200": len(before)}
    assert away, "no request was answered while inference was away"
    assert {o.label for o in away} <= {"502", "503"}, counts(away)
    assert all(o.json_error for o in away), "an error without a JSON body"
    assert {o.label for o in outcomes} <= {"200", "502", "503"}, counts(outcomes)
    assert counts(later[first_200:]) == {"200": len(later) - first_200}
    assert faults.pid("gateway") == gateway_pid

    sent = [o.request_id for o in outcomes]
    rows = await faults.settled_log_counts("inference-down", sent)
    assert not exactly_one_row_each(rows, sent, sent)
