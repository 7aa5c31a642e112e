"""5xx answers: an idempotent call is retried a bounded number of times, then raised typed."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from modelgate_client import Client, ServerError
from modelgate_shared.stack import Stack

READY_WITHIN_SECONDS = 120
LOGGED_WITHIN_SECONDS = 10


def _restart_inference(stack: Stack) -> None:
    # The launcher's own start and readiness wait, as tests/resilience/fault_stack.py does.
    service = stack._spawn("inference")
    stack._wait_ready(service, time.monotonic() + READY_WITHIN_SECONDS)


def test_server_errors_are_retried_then_raised(stack: Stack, base_url: str, user: tuple[str, str]) -> None:
    username, password = user
    with Client(base_url, username=username, password=password, max_retries=2) as client:
        sub = client.me()["id"]
        inference = stack.services["inference"].process
        inference.send_signal(signal.SIGKILL)
        inference.wait(timeout=10)
        try:
            with pytest.raises(ServerError) as failed:
                client.models()
        finally:
            _restart_inference(stack)
        assert failed.value.status is not None and failed.value.status >= 500
        assert failed.value.request_id

        # The first try and exactly max_retries more reached the gateway.
        with Client(base_url, username=ADMIN_USERNAME, password=ADMIN_PASSWORD, scope="admin") as admin:
            deadline = time.monotonic() + LOGGED_WITHIN_SECONDS
            while True:
                items = admin.request_log(user=sub, path="/v1/models")["items"]
                if len(items) >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert len(items) == 3 and all(i["status"] >= 500 for i in items), items

        # Back up: the same client's next call succeeds (retrying through the upstream's cooldown).
        assert client.models()
