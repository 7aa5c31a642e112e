"""The real pieces together: the baseline app in its own process, loaded by wrk and the Lua script."""

import shutil

import pytest

from bench import baseline_server, payloads, runner, scenarios
from bench.wrk import Load, WrkRun

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.fixture(scope="module")
def baseline_url(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("baseline")
    runner._train_model(root / "models")
    with baseline_server.running(root / "models", cpu=None, log_path=root / "baseline.log") as (url, _pid):
        yield url


def run(load: Load) -> object:
    return WrkRun(shutil.which("wrk") or "wrk", load, connections=2, duration_s=1, cpu=None).wait()


def test_wrk_posts_the_body_and_counts_successes(baseline_url: str) -> None:
    result = run(Load(f"{baseline_url}{scenarios.PREDICT_PATH}", "POST", payloads.v1_predict(), scenarios.JSON))
    assert result.requests > 0
    assert result.errors == 0
    assert result.statuses == {"200": result.requests}
    assert 0 < result.p50_ms <= result.p99_ms


def test_wrk_counts_non_2xx_as_errors(baseline_url: str) -> None:
    # The body lacks a feature: the baseline answers 422 to every request.
    result = run(Load(f"{baseline_url}{scenarios.PREDICT_PATH}", "POST", b'{"instances":[{"preg":1}]}', scenarios.JSON))
    assert result.requests > 0
    assert result.non2xx == result.requests
    assert set(result.statuses) == {"422"}


def test_probe_reports_the_failing_response(baseline_url: str) -> None:
    with pytest.raises(scenarios.ScenarioError, match="404"):
        scenarios.probe(Load(f"{baseline_url}/nowhere"))


def test_extra_headers_reach_the_server(baseline_url: str) -> None:
    url = f"{baseline_url}{scenarios.PREDICT_PATH}"
    # Without a JSON content type FastAPI refuses the body; given through BENCH_HEADERS it parses.
    without = run(Load(url, "POST", payloads.v1_predict()))
    with_header = run(Load(url, "POST", payloads.v1_predict(), headers=(("Content-Type", "application/json"),)))
    assert without.non2xx == without.requests > 0
    assert with_header.errors == 0 and with_header.requests > 0
