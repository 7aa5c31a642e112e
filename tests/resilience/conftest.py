"""Fixtures of the fault suite (issue 13): a stack of its own, every part of which a test stops and starts.

- ``faults``: the stack (auth, inference, gateway: the launcher's processes) on a Postgres and a
  Redis private to this suite, never the environment's or another suite's, so stopping them
  disturbs no other test. Rate limits are out of the way (a 429 would hide what a fault did),
  except for tokens of the ``models:read`` scope alone: ``TIGHT``, to see limiting resume after
  a Redis outage. The request log is flushed every 100 ms and retried within half a second.
- every case starts from a healthy stack (``_healthy``): whatever an earlier case killed,
  stopped or started with other settings is put back first.
- ``report``: each case's counts, printed at the end of the run (the figures RELIABILITY.md
  quotes) and written as JSON to ``$MODELGATE_RELIABILITY_REPORT`` when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from modelgate_shared.backing import DATABASE_URL_ENV, REDIS_URL_ENV
from modelgate_shared.stack import Stack, StackSettings, free_port
from modelgate_shared.testing import training_data_source

from ..conftest import password_login, sign_up
from .backing_servers import RestartablePostgres, RestartableRedis
from .fault_stack import FaultStack

UNLIMITED = "1000000/minute"
# Two requests, then 429 for a minute: one probe shows whether limiting works.
TIGHT = "1/minute:2"
TIGHT_SCOPE = "models:read"
BASE_ENV = {
    "MODELGATE_AUTH_BCRYPT_ROUNDS": "4",
    "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT": UNLIMITED,
    "MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP": UNLIMITED,
    "MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME": UNLIMITED,
    # A token's most generous scope policy wins: "predict models:read" is unlimited, "models:read" alone tight.
    "MODELGATE_GATEWAY_RATE_LIMIT_OVERRIDES": json.dumps({"scope:predict": UNLIMITED, f"scope:{TIGHT_SCOPE}": TIGHT}),
    "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "0.1",
    "MODELGATE_GATEWAY_LOG_RETRY_MAX_BACKOFF_SECONDS": "0.5",
    # The test process reads /metrics on the public port (the scraper of this stack).
    "MODELGATE_GATEWAY_METRICS_ALLOW": '["127.0.0.1/32"]',
}
USERS = 8
# Below the services' keep-alive timeout (uvicorn's 5 s), as the gateway's own upstream pool
# keeps it: a client that reuses a connection the server is closing at that moment sees a reset
# (httpx's default expiry is those same 5 s), which no server can answer.
CLIENT_KEEPALIVE_SECONDS = 2.0


@pytest.fixture(scope="package")
def faults() -> Iterator[FaultStack]:
    root = Path(tempfile.mkdtemp(prefix="mg-faults-"))
    postgres = RestartablePostgres(root / "pg")
    redis = RestartableRedis(root / "redis")
    stack: Stack | None = None
    try:
        redis.start_blocking()
        settings = StackSettings(
            state_dir=root / "state",
            gateway_port=free_port(),
            auth_port=free_port(),
            inference_port=free_port(),
            training_data=training_data_source(),
            startup_timeout_seconds=180,
        )
        stack = Stack(settings, ephemeral=True, log_to_files=True, extra_env=dict(BASE_ENV))
        # The launcher takes Postgres and Redis from these two variables; only while it starts,
        # so no other suite of this session sees them.
        with pytest.MonkeyPatch.context() as env:
            env.setenv(DATABASE_URL_ENV, postgres.url)
            env.setenv(REDIS_URL_ENV, redis.url)
            stack.start()
        yield FaultStack(stack, postgres, redis, BASE_ENV)
    finally:
        if stack is not None:
            stack.stop()
        redis.close()
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
async def _healthy(faults: FaultStack) -> None:
    await faults.ensure_healthy()


@dataclass(frozen=True)
class Accounts:
    tokens: list[str]  # "predict models:read", one per user
    tight_token: str  # "models:read" alone: TIGHT
    username: str
    password: str


@pytest.fixture(scope="package")
async def accounts(faults: FaultStack) -> Accounts:
    tokens = []
    async with httpx.AsyncClient(base_url=faults.gateway_url, timeout=30) as client:
        for _ in range(USERS):
            username, password, _ = await sign_up(client)
            tokens.append((await password_login(client, username, password))["access_token"])
        # A user of its own: a user's tokens share one bucket, whatever their scopes.
        tight_username, tight_password, _ = await sign_up(client)
        tight = (await password_login(client, tight_username, tight_password, scope=TIGHT_SCOPE))["access_token"]
    return Accounts(tokens, tight, username, password)


@pytest.fixture
async def client(faults: FaultStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=faults.gateway_url,
        timeout=60,
        limits=httpx.Limits(max_connections=32, keepalive_expiry=CLIENT_KEEPALIVE_SECONDS),
    ) as client:
        yield client


class Report:
    """Per case: what was expected, what was seen, the counts by status."""

    def __init__(self) -> None:
        self.cases: dict[str, dict[str, Any]] = {}

    def record(self, case: str, **facts: Any) -> None:
        self.cases.setdefault(case, {}).update(facts)


REPORT = Report()


@pytest.fixture
def report() -> Report:
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.cases:
        return
    terminalreporter.section("fault suite: answers by status, per case")
    for case, facts in REPORT.cases.items():
        terminalreporter.write_line(f"{case}:")
        for name, value in facts.items():
            terminalreporter.write_line(f"  {name}: {json.dumps(value)}")
    if path := os.environ.get("MODELGATE_RELIABILITY_REPORT"):
        Path(path).write_text(json.dumps(REPORT.cases, indent=2) + "\n")
