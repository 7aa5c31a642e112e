import httpcore
import pytest
from gateway_service.transport import AsyncioBackend, UpstreamTransport

from bench import transport_pool as tp
from bench.transport_pool import Cell, Run


def test_loads_parse_as_concurrency_and_connections_opened_first() -> None:
    assert Cell.parse("16") == Cell(16, 16)
    assert Cell.parse("16/200") == Cell(16, 200)
    assert Cell.parse("16/200").label == "16/200" and Cell.parse("64").label == "64"
    for bad in ("0", "16/8", "16/201", "x"):
        with pytest.raises(ValueError):
            Cell.parse(bad)


def test_runs_are_interleaved_and_the_order_alternates() -> None:
    order = tp.schedule([Cell(1, 1), Cell(16, 16)], rounds=2)
    assert [(r, c.concurrency, v) for r, c, v in order] == [
        (0, 1, "own"), (0, 1, "httpcore"), (0, 16, "httpcore"), (0, 16, "own"),
        (1, 1, "httpcore"), (1, 1, "own"), (1, 16, "own"), (1, 16, "httpcore"),
    ]  # fmt: skip


def _run(variant: str, load: str, round_no: int, requests: int, cpu_s: float) -> Run:
    return Run(variant, load, round_no, requests, 2.0, cpu_s, 0.5, cpu_s + 0.2, 0)


def test_summary_and_paired_ratios() -> None:
    runs = [
        _run("own", "16", 0, 1000, 0.2),
        _run("httpcore", "16", 0, 1000, 0.3),
        _run("own", "16", 1, 1000, 0.4),
        _run("httpcore", "16", 1, 1000, 0.4),
    ]
    own, core = tp.summarise(runs)
    assert (own.variant, own.cpu_us_min, own.cpu_us_median, own.cpu_us_max) == ("own", 200.0, 300.0, 400.0)
    assert core.rps_median == 500.0 and core.server_busy_median == 0.25
    assert own.other_load_median == pytest.approx(0.1)  # 0.2 s of someone else's CPU in 2 s
    assert tp.paired_ratios(runs) == {"16": [pytest.approx(1.5), pytest.approx(1.0)]}
    assert "1.250x [1.000-1.500]" in tp.table([own, core], tp.paired_ratios(runs))
    row = tp.comparison([own, core], tp.paired_ratios(runs)).splitlines()[-1]
    assert row == "| 16 | 200 / 300 | 300 / 350 | 1.25x [1.00-1.50] | 500 / 500 | 10% / 10% |"


def test_both_variants_are_the_gateway_transport_differing_only_in_the_pool() -> None:
    own = tp.make_transport("own")
    core = tp.make_transport("httpcore")
    assert type(own) is type(core) is UpstreamTransport
    pool = core._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, AsyncioBackend)
    assert pool._max_connections == pool._max_keepalive_connections == tp.MAX_CONNECTIONS


def test_the_upstream_answers_and_both_transports_count_requests() -> None:
    with tp.upstream(None) as (url, pid):
        for variant in tp.VARIANTS:
            run = tp.run_once(
                variant, url, Cell(2, 4), warmup=0.05, duration=0.3, server_pid=pid, cpu=None, loop="asyncio",
                round_no=0,
            )  # fmt: skip
            assert run.requests > 10 and run.errors == 0
            assert run.client_cpu_s > 0 and run.cpu_us_per_request > 0
