from bench.targets import LogIngest, evaluate
from bench.wrk import WrkResult


def result(rps: float, p50: float = 1.0, p99: float = 5.0) -> WrkResult:
    return WrkResult(
        requests=int(rps * 10), duration_s=10.0, p50_ms=p50, p90_ms=p50, p99_ms=p99, mean_ms=p50, max_ms=p99,
        non2xx=0, socket_errors=0,
    )  # fmt: skip


def by_name(targets):
    return {t.name: t for t in targets}


def test_all_targets_pass_and_miss_on_their_thresholds() -> None:
    runs = {
        ("baseline", 16): result(1000),
        ("secured", 16): result(500, p99=20.0),
        ("secured", 1): result(300, p50=2.0, p99=4.0),
        ("inference_direct", 1): result(400, p50=1.0),
        ("batch_10000", 1): result(5),
        ("storm_healthz", 1): result(100, p99=10.5),
        ("storm_predict", 1): result(100, p99=8.1),
    }
    targets = by_name(evaluate(runs, {10_000: 200_000.0}, LogIngest(answered=100, rows=99)))
    assert targets["secured req/s vs baseline (c=16)"].passed is True  # exactly 0.5
    assert targets["secured p99 (c=16)"].passed is True  # exactly 20 ms
    assert targets["gateway-added p50 (c=1)"].value == 1.0 and targets["gateway-added p50 (c=1)"].passed
    assert targets["10,000-row batch via gateway (V1 JSON) vs in-process rows/s (c=1)"].value == 0.25
    assert targets["auth /healthz p99 during login storm"].passed is False
    assert targets["predict p99 during login storm vs without (c=1)"].passed is False  # 8.1 > 2 x 4.0
    assert targets["log ingest rows missing"].value == 1 and targets["log ingest rows missing"].verdict == "MISS"


def test_missing_runs_are_not_measured_rather_than_passed() -> None:
    targets = evaluate({}, {}, None)
    assert {t.verdict for t in targets} == {"n/a"}


def test_log_rows_beyond_answered_are_in_flight_not_missing() -> None:
    ingest = LogIngest(answered=100, rows=116)
    assert ingest.missing == 0 and ingest.extra == 16


def test_cpu_cross_check_compares_cpu_cost_per_request() -> None:
    cpu = {("baseline", 16): 0.8, ("secured", 16): 4.0}
    check = by_name(evaluate({}, {}, None, cpu))["cross-check: same ratio from server CPU per request (c=16)"]
    assert check.value == 0.2 and check.verdict == "MISS"
    assert "0.80 vs 4.00" in check.detail
