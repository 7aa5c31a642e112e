"""The request log: exact counts, outages of Postgres (and Redis), and a full queue."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy.engine import make_url

from .conftest import log_rows
from .servers import wait_until
from .tcp_proxy import tcp_proxy


def _postgres_target(url: str) -> tuple[str | None, int | None, str | None]:
    """Where ``url`` really listens: (host, port, None) or (None, None, unix socket path)."""
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        return None, None, f"{socket_dir}/.s.PGSQL.{parsed.port or 5432}"
    return parsed.host, parsed.port or 5432, None


def _via(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port, query={}).render_as_string(hide_password=False)


def test_row_count_equals_request_count_after_a_burst(make_gateway: Callable[..., str], gateway_db: str) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="100000/minute")
    with httpx.Client(base_url=gateway, limits=httpx.Limits(max_connections=16)) as client:

        def call(i: int) -> int:
            return client.post(f"/v1/models/m{i % 3}/predict", json={"i": i}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(call, range(300)))
    assert statuses.count(200) == 300
    wait_until(lambda: len(log_rows(gateway_db)) >= 300)
    rows = log_rows(gateway_db)
    assert len(rows) == 300
    assert len({r["request_id"] for r in rows}) == 300
    assert {r["path"] for r in rows} == {f"/v1/models/m{i}/predict" for i in range(3)}


def test_rows_queued_while_postgres_is_down_land_after_it_returns(
    make_gateway: Callable[..., str], gateway_db: str
) -> None:
    with tcp_proxy(*_postgres_target(gateway_db)) as proxy:
        gateway = make_gateway(
            MODELGATE_GATEWAY_DATABASE_URL=_via(gateway_db, proxy.port),
            MODELGATE_GATEWAY_LOG_RETRY_MAX_BACKOFF_SECONDS="0.2",
        )
        with httpx.Client(base_url=gateway) as client:
            for _ in range(5):
                assert client.get("/v1/models").status_code == 200
            wait_until(lambda: len(log_rows(gateway_db)) == 5)

            proxy.stop()
            for _ in range(20):
                # Requests never wait on the database.
                assert client.get("/v1/models", timeout=2).status_code == 200
            # It serves without Postgres, so it stays ready and names what is degraded.
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["postgres"].startswith("degraded: request-log rows wait in memory")
            assert len(log_rows(gateway_db)) == 5

            proxy.start()
            wait_until(lambda: len(log_rows(gateway_db)) == 25, timeout=20)
            metrics = client.get("/metrics").text
        assert "gateway_log_rows_written_total 25.0" in metrics
        assert "gateway_log_rows_dropped_total 0.0" in metrics


def test_full_queue_drops_and_counts(make_gateway: Callable[..., str], gateway_db: str) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_DATABASE_URL="postgresql://nobody:x@127.0.0.1:1/none",
        MODELGATE_GATEWAY_LOG_QUEUE_SIZE="3",
        MODELGATE_GATEWAY_LOG_BATCH_SIZE="2",
        MODELGATE_GATEWAY_LOG_SHUTDOWN_TIMEOUT_SECONDS="0.5",
    )
    with httpx.Client(base_url=gateway) as client:
        assert all(client.get("/v1/models").status_code == 200 for _ in range(10))
        metrics = client.get("/metrics").text
    # At most one batch (2) in the writer's hands and 3 queued: the rest were dropped.
    dropped = next(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("gateway_log_rows_dropped")
    )
    depth = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("gateway_log_queue_depth"))
    assert dropped + depth == 10
    assert 5 <= dropped <= 7


def test_redis_outage_fails_open_and_limits_again_after(make_gateway: Callable[..., str], redis_url: str) -> None:
    if redis_url.startswith("unix://"):
        target: tuple[str | None, int | None, str | None] = (None, None, redis_url.removeprefix("unix://"))
    else:
        parsed = httpx.URL(redis_url)
        target = (parsed.host, parsed.port or 6379, None)
    with tcp_proxy(*target) as proxy:
        gateway = make_gateway(
            MODELGATE_GATEWAY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{0}",
            MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="3/hour",
        )
        with httpx.Client(base_url=gateway) as client:
            assert client.get("/v1/models").status_code == 200
            proxy.stop()
            assert [client.get("/v1/models").status_code for _ in range(5)] == [200] * 5
            proxy.start()

            def limited_again() -> bool:
                return client.get("/v1/models").status_code == 429

            # Back in charge: the two requests left in the bucket, then 429.
            wait_until(limited_again, timeout=10, interval=0.3)
