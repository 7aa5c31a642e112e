"""Tests that run the gateway the way the launcher does: ``uvicorn --factory`` in its own process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from .conftest import log_rows
from .servers import gateway_process, wait_until


def test_migrate_cli_is_idempotent(database_url: str) -> None:
    env = {**os.environ, "MODELGATE_GATEWAY_DATABASE_URL": database_url}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "gateway_service", "migrate"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    assert log_rows(database_url) == []


def test_missing_settings_fail_fast_naming_the_field() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway_service", "migrate"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "MODELGATE_GATEWAY_DATABASE_URL" in result.stderr


def test_bad_urls_fail_fast_naming_the_field(gateway_env: dict[str, str]) -> None:
    env = {
        **os.environ,
        **gateway_env,
        "MODELGATE_GATEWAY_DATABASE_URL": "mysql://x@y/z",
        "MODELGATE_GATEWAY_REDIS_URL": "http://localhost",
    }
    code = "from gateway_service.app import create_app; create_app()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "MODELGATE_GATEWAY_DATABASE_URL" in result.stderr and "PostgreSQL" in result.stderr
    assert "MODELGATE_GATEWAY_REDIS_URL" in result.stderr


def test_two_gateways_sharing_redis_enforce_one_exact_limit(gateway_env: dict[str, str], tmp_path: Path) -> None:
    limit = 25
    env = {**gateway_env, "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT": f"{limit}/hour"}
    with (
        gateway_process(env, tmp_path / "a.log") as a,
        gateway_process(env, tmp_path / "b.log") as b,
        httpx.Client(limits=httpx.Limits(max_connections=32)) as client,
    ):
        urls = [f"{(a, b)[i % 2].url}/v1/models" for i in range(80)]
        barrier = threading.Barrier(16)

        def call(url: str) -> int:
            # Start together so the two gateways really race for the same bucket.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            return client.get(url, timeout=30).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(call, urls))
    assert statuses.count(200) == limit
    assert statuses.count(429) == len(urls) - limit


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} "))


def test_sigterm_during_traffic_loses_no_row(gateway_env: dict[str, str], gateway_db: str, tmp_path: Path) -> None:
    # No batch can fill up or time out before SIGTERM: every row is still in memory when
    # it arrives, and only the shutdown flush can write it.
    env = {
        **gateway_env,
        "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "3600",
        "MODELGATE_GATEWAY_LOG_BATCH_SIZE": "1000000",
    }
    answered = 0
    lock = threading.Lock()
    stop = threading.Event()
    with gateway_process(env, tmp_path / "gw.log") as gw:

        def traffic() -> None:
            nonlocal answered
            with httpx.Client(base_url=gw.url) as client:
                while not stop.is_set():
                    try:
                        response = client.get("/v1/models")
                    except httpx.HTTPError:
                        return  # the gateway is closing
                    if response.status_code == 200:
                        with lock:
                            answered += 1

        threads = [threading.Thread(target=traffic) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: answered >= 100)
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert _metric(metrics, "gateway_log_rows_written_total") == 0
        assert _metric(metrics, "gateway_log_queue_depth") > 0
        assert log_rows(gateway_db) == []
        # uvicorn re-raises SIGTERM after a graceful shutdown, so -SIGTERM is a clean exit here.
        assert gw.terminate() in (0, -signal.SIGTERM), gw.log()
        assert "Application shutdown complete" in gw.log()
        assert "flush timed out" not in gw.log()
        stop.set()
        for t in threads:
            t.join(10)
    rows = log_rows(gateway_db)
    # Every answered request has its row; requests cut off by the shutdown may add rows, never lose them.
    assert len([r for r in rows if r["status"] == 200]) == answered
