"""Redis stopped: failing open the gateway serves everything and shows the outage in ``/metrics``;
failing closed it answers 503, never 500; either way limiting resumes by itself within seconds
of Redis returning (a tightly limited token meets 429 again), and so do revocations: a Redis
that restarts empty is given them again by auth, which keeps them in Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from ..conftest import bearer, eventually, password_login, sign_up
from .conftest import Accounts, Report
from .fault_stack import FaultStack, exactly_one_row_each, metric
from .traffic import Call, Traffic, counts, counts_by_call, metadata, predict

RESUME_WITHIN_SECONDS = 15.0
# Auth republishes every 5 s (MODELGATE_AUTH_REVOCATION_REPUBLISH_SECONDS); generous for a busy machine.
REVOKED_AGAIN_WITHIN_SECONDS = 60.0


async def tight_probe(client: httpx.AsyncClient, token: str) -> int:
    """One request of the tightly limited token (two per minute, then 429)."""
    response = await client.get(
        "/v1/models/diabetes",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": f"redis-tight-{uuid.uuid4().hex}"},
    )
    return response.status_code


async def seconds_until_limited(client: httpx.AsyncClient, token: str) -> float:
    """From now until the tight token is refused (429): limiting works again."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while (status := await tight_probe(client, token)) != 429:
        assert status in (200, 503), status
        if loop.time() - start > RESUME_WITHIN_SECONDS:
            raise AssertionError(
                f"no 429 within {RESUME_WITHIN_SECONDS:.0f}s of Redis returning: limiting did not resume"
            )
        await asyncio.sleep(0.05)
    return loop.time() - start


def model_calls(accounts: Accounts) -> list[Call]:
    return [*(predict(t) for t in accounts.tokens), metadata(accounts.tokens[0])]


async def test_redis_stopped_fail_open_serves_everything(
    faults: FaultStack, accounts: Accounts, client: httpx.AsyncClient, report: Report
) -> None:
    loop = asyncio.get_running_loop()
    assert await seconds_until_limited(client, accounts.tight_token) >= 0  # limiting works to begin with
    traffic = Traffic(client, model_calls(accounts), prefix="redis-open").start()
    await traffic.wait_for_answers(50)
    errors_before = metric(await faults.metrics(), "gateway_rate_limit_backend_errors_total")

    await faults.redis.stop()
    stopped = loop.time()
    await traffic.wait_for_answers(200)
    tight_during = [await tight_probe(client, accounts.tight_token) for _ in range(5)]
    measured = loop.time()  # every request answered by now was decided before this scrape
    errors_during = metric(await faults.metrics(), "gateway_rate_limit_backend_errors_total") - errors_before
    ready_during = await faults.ready_status()
    await faults.redis.start()
    resumed_after = await seconds_until_limited(client, accounts.tight_token)
    await traffic.wait_for_answers(50)
    outcomes = await traffic.stop()

    outage = traffic.between(stopped, measured)
    report.record(
        "redis stopped, fail-open (default)",
        expected="everything served (200), the outage counted in gateway_rate_limit_backend_errors_total; "
        "/readyz 200 (can serve); 429s again within seconds of Redis returning",
        all_requests=counts_by_call(outcomes),
        during_outage=counts(outage),
        tight_token_during_outage=tight_during,
        rate_limit_backend_errors_during_outage=errors_during,
        gateway_readyz_during_outage=ready_during,
        seconds_from_redis_back_to_first_429=round(resumed_after, 2),
    )
    assert counts(outcomes) == {"200": len(outcomes)}
    assert len(outage) >= 100
    assert tight_during == [200] * 5, "failing open serves the limited token too"
    # Every decision made while Redis was away is counted: the outage shows in /metrics.
    assert errors_during >= len(outage) + len(tight_during)
    sent = [o.request_id for o in outcomes]
    assert not exactly_one_row_each(await faults.settled_log_counts("redis-open", sent), sent, sent)
    # Issue 13, defect 6: a gateway that fails open can serve without Redis, so it is ready.
    assert ready_during == 200, "gateway /readyz is not 200 while Redis is down and it fails open"


async def test_redis_stopped_fail_closed_answers_503(
    faults: FaultStack, accounts: Accounts, client: httpx.AsyncClient, report: Report
) -> None:
    loop = asyncio.get_running_loop()
    await faults.restart("gateway", {"MODELGATE_GATEWAY_RATE_LIMIT_FAIL_OPEN": "false"})
    traffic = Traffic(client, model_calls(accounts), prefix="redis-closed").start()
    await traffic.wait_for_answers(50)

    await faults.redis.stop()
    stopped = loop.time()
    await traffic.wait_for_answers(200)
    ready_during = await faults.ready_status()
    restarted = loop.time()
    await faults.redis.start()
    resumed_after = await seconds_until_limited(client, accounts.tight_token)
    back = loop.time()
    await traffic.wait_for_answers(50)
    outcomes = await traffic.stop()

    outage = traffic.between(stopped, restarted)
    after = [o for o in outcomes if o.sent >= back]
    report.record(
        "redis stopped, fail-closed",
        expected="503 with a JSON body while Redis is away, never 500; /readyz 503; "
        "200 and 429s again within seconds of Redis returning",
        all_requests=counts_by_call(outcomes),
        during_outage=counts(outage),
        after_limiting_resumed=counts(after),
        gateway_readyz_during_outage=ready_during,
        seconds_from_redis_back_to_first_429=round(resumed_after, 2),
    )
    assert len(outage) >= 100
    assert counts(outage) == {"503": len(outage)}
    assert all(o.json_error for o in outage)
    assert {o.label for o in outcomes} <= {"200", "503"}, counts(outcomes)
    assert after and counts(after) == {"200": len(after)}
    assert ready_during == 503, "a gateway that fails closed cannot serve without Redis"
    sent = [o.request_id for o in outcomes]
    assert not exactly_one_row_each(await faults.settled_log_counts("redis-closed", sent), sent, sent)


async def test_a_revoked_token_stays_refused_after_redis_restarts_empty(
    faults: FaultStack, client: httpx.AsyncClient, report: Report
) -> None:
    username, password, _ = await sign_up(client)
    old = (await password_login(client, username, password))["access_token"]

    async def probe() -> int:
        return (await client.get("/v1/models/diabetes", headers=bearer(old))).status_code

    assert await probe() == 200
    changed = await client.patch(
        "/auth/users/me", headers=bearer(old), json={"password": f"pw-{uuid.uuid4().hex}", "current_password": password}
    )
    assert changed.status_code == 200, changed.text
    assert await probe() == 401, "the revocation did not reach the gateway at once"

    # Without persistence: the restarted Redis has lost the not-before auth wrote.
    await faults.redis.stop()
    await faults.redis.start()
    loop = asyncio.get_running_loop()
    back = loop.time()
    served_after_restart: list[int] = []

    async def refused() -> int | None:
        status = await probe()
        served_after_restart.append(status)
        return status if status == 401 else None

    await eventually(refused, "the revoked token refused again after Redis restarted", REVOKED_AGAIN_WITHIN_SECONDS)
    report.record(
        "redis restarted empty, a revoked token",
        expected="401 before the restart; 401 again within the republish interval (5 s) of Redis returning",
        answers_after_restart=dict(sorted(Counter(str(s) for s in served_after_restart).items())),
        seconds_from_redis_back_to_refused=round(loop.time() - back, 2),
    )
