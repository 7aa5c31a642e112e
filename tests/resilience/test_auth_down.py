"""Auth killed: predictions with tokens already issued go on, ``/auth/*`` says it is away, and
once auth is back logins work, with nothing else restarted."""

from __future__ import annotations

import asyncio

import httpx

from ..conftest import password_login
from .conftest import Accounts, Report
from .fault_stack import FaultStack, exactly_one_row_each
from .traffic import Traffic, counts, counts_by_call, discovery, login, metadata, predict


async def test_auth_killed_predictions_go_on_and_logins_return(
    faults: FaultStack, accounts: Accounts, client: httpx.AsyncClient, report: Report
) -> None:
    loop = asyncio.get_running_loop()
    others = {name: faults.pid(name) for name in ("inference", "gateway")}
    models = Traffic(
        client, [*(predict(t) for t in accounts.tokens), metadata(accounts.tokens[0])], prefix="auth-down-models"
    ).start()
    await models.wait_for_answers(50)

    await faults.kill("auth")
    killed = loop.time()
    # Logins and an /auth/* read while auth is away.
    auth_calls = Traffic(
        client, [login(accounts.username, accounts.password), discovery()], prefix="auth-down-auth", workers=1
    ).start()
    await auth_calls.wait_for_answers(40)
    await models.wait_for_answers(200)
    away = await auth_calls.stop()
    restarted = loop.time()

    await faults.start("auth")  # as an orchestrator would: only auth
    back = loop.time()
    relogin = await password_login(client, accounts.username, accounts.password)
    after = await client.post(
        "/v1/models/diabetes/predict",
        json={
            "instances": [
                {"preg": 1, "plas": 85, "pres": 66, "skin": 29, "test": 0, "mass": 26.6, "pedi": 0.351, "age": 31}
            ]
        },
        headers={"Authorization": f"Bearer {relogin['access_token']}"},
    )
    await models.wait_for_answers(50)
    model_outcomes = await models.stop()

    outage = models.between(killed, restarted)
    report.record(
        "auth killed",
        expected="predictions with issued tokens 200 throughout; /auth/* 502/503 with a JSON body; "
        "logins 200 once auth is back",
        predictions_and_metadata=counts_by_call(model_outcomes),
        during_outage=counts(outage),
        auth_while_away=counts_by_call(away),
        auth_while_away_json_bodies=sum(1 for o in away if o.json_error),
        prediction_with_the_new_login=after.status_code,
        auth_ready_after_seconds=round(back - restarted, 1),
    )
    assert counts(model_outcomes) == {"200": len(model_outcomes)}
    assert len(outage) >= 100, "too little traffic while auth was away"
    assert {o.label for o in away} <= {"502", "503"}, counts_by_call(away)
    assert all(o.json_error for o in away), "an /auth/* error without a JSON body"
    assert after.status_code == 200, after.text
    assert {name: faults.pid(name) for name in others} == others, "something besides auth was restarted"

    sent = [o.request_id for o in model_outcomes + away]
    rows = {
        **await faults.settled_log_counts("auth-down-models", [o.request_id for o in model_outcomes]),
        **await faults.settled_log_counts("auth-down-auth", [o.request_id for o in away]),
    }
    assert not exactly_one_row_each(rows, sent, sent)
