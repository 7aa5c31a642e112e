"""Postgres stopped for 30 s under traffic: every request is answered, and afterwards
``request_log`` holds exactly one row per request id sent (not "at least")."""

from __future__ import annotations

import asyncio

import httpx

from .conftest import Accounts, Report
from .fault_stack import FaultStack, exactly_one_row_each, metric
from .traffic import Traffic, counts, counts_by_call, login, metadata, predict

OUTAGE_SECONDS = 30


async def test_postgres_stopped_every_request_answered_and_logged_once(
    faults: FaultStack, accounts: Accounts, client: httpx.AsyncClient, report: Report
) -> None:
    loop = asyncio.get_running_loop()
    calls = [*(predict(t) for t in accounts.tokens), metadata(accounts.tokens[0])]
    traffic = Traffic(client, calls, prefix="pg-down", pause=0.02).start()
    await traffic.wait_for_answers(50)
    errors_before = metric(await faults.metrics(), "gateway_log_write_errors_total")

    await asyncio.to_thread(faults.postgres.stop)
    stopped = loop.time()
    # Logins need auth's database: what they answer while it is away.
    logins = Traffic(client, [login(accounts.username, accounts.password)], prefix="pg-login", workers=1, pause=0.5)
    logins.start()
    await asyncio.sleep(OUTAGE_SECONDS)  # the outage's length, not a synchronisation
    during = await faults.metrics()
    gateway_ready_during = await faults.ready_status()
    auth_ready_during = await faults.ready_status("auth")
    login_outcomes = await logins.stop()
    restarted = loop.time()
    await asyncio.to_thread(faults.postgres.start)
    await traffic.wait_for_answers(50)
    outcomes = await traffic.stop()
    relogin = await client.post(
        "/auth/token", data={"grant_type": "password", "username": accounts.username, "password": accounts.password}
    )

    answered = [o.request_id for o in outcomes if o.status is not None]
    rows = await faults.settled_log_counts("pg-down", answered)
    outage = traffic.between(stopped, restarted)
    after = await faults.metrics()
    report.record(
        "postgres stopped 30 s",
        expected="every request answered (200); request_log: exactly one row per request id sent",
        outage_seconds=round(restarted - stopped, 1),
        all_requests=counts_by_call(outcomes),
        during_outage=counts(outage),
        queued_rows_at_end_of_outage=metric(during, "gateway_log_queue_depth"),
        failed_batch_writes=metric(after, "gateway_log_write_errors_total") - errors_before,
        gateway_readyz_during_outage=gateway_ready_during,
        logins_during_outage=counts(login_outcomes),
        login_error_bodies_json=all(o.json_error for o in login_outcomes),
        auth_readyz_during_outage=auth_ready_during,
        login_after_postgres_returned=relogin.status_code,
        request_ids_sent=len(outcomes),
        request_ids_with_exactly_one_row=sum(1 for o in outcomes if rows.get(o.request_id) == 1),
        rows_for_these_ids=sum(rows.values()),
    )
    assert counts(outcomes) == {"200": len(outcomes)}
    assert len(outage) >= 100, "too little traffic while Postgres was down"
    assert metric(during, "gateway_log_queue_depth") > 0, "no row was waiting for Postgres"
    assert metric(during, "gateway_log_write_errors_total") > errors_before, "no write failed: was Postgres down?"
    assert metric(after, "gateway_log_rows_dropped_total") == 0
    sent = [o.request_id for o in outcomes]
    assert not exactly_one_row_each(rows, sent, sent), exactly_one_row_each(rows, sent, sent)
    # Auth cannot log anyone in without its database: it says so (503, retry), not "internal error".
    assert login_outcomes and counts(login_outcomes) == {"503": len(login_outcomes)}, counts(login_outcomes)
    assert all(o.json_error for o in login_outcomes)
    assert relogin.status_code == 200, relogin.text
    # The gateway serves without Postgres (rows wait in memory): still ready. Auth cannot log
    # anyone in: not ready.
    assert (gateway_ready_during, auth_ready_during) == (200, 503)
    logins_sent = [o.request_id for o in login_outcomes]
    login_rows = await faults.settled_log_counts("pg-login", logins_sent)
    assert not exactly_one_row_each(login_rows, logins_sent, logins_sent)
