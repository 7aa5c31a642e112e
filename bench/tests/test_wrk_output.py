import pytest

from bench.wrk import WrkError, command, parse_output

SAMPLE = """Running 1s test @ http://127.0.0.1:1/x
  1 threads and 2 connections
  Latency Distribution
     50%  780.00us
  1932 requests in 1.00s, 0.96MB read
BENCH_JSON {"requests":2000,"duration_us":2000000,"bytes":10,"latency_us":{"p50":780,"p90":2273,"p99":6637,\
"mean":1154.8,"max":11451},"errors":{"connect":1,"read":2,"write":0,"status":5,"timeout":3},"non2xx":7,\
"statuses":{"200":1993,"404":5,"302":2}}
"""


def test_parse_output_converts_units_and_counts_errors() -> None:
    result = parse_output(SAMPLE)
    assert result.requests == 2000
    assert result.rps == pytest.approx(1000.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (0.78, 2.273, 6.637)
    # non-2xx (302 included, which wrk itself would not count) plus connect/read/timeout, not status twice
    assert result.non2xx == 7
    assert result.socket_errors == 6
    assert result.errors == 13
    assert result.statuses == {"200": 1993, "404": 5, "302": 2}


def test_parse_output_without_marker_names_the_problem() -> None:
    with pytest.raises(WrkError, match="BENCH_JSON"):
        parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_command_pins_wrk_to_the_load_cpu() -> None:
    args = command("/usr/bin/wrk", "http://h/x", connections=16, duration_s=10, cpu=1)
    assert args[:3] == ["taskset", "-c", "1"]
    assert "-c16" in args and "-d10s" in args and "--latency" in args
    assert command("/usr/bin/wrk", "http://h/x", connections=1, duration_s=0.4, cpu=None)[0] == "/usr/bin/wrk"


def test_missing_wrk_without_apt_get_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.wrk as wrk_module

    monkeypatch.setattr(wrk_module.shutil, "which", lambda name: None)
    with pytest.raises(WrkError, match="install wrk"):
        wrk_module.ensure_wrk()


def test_failed_apt_get_is_reported_with_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import bench.wrk as wrk_module

    monkeypatch.setattr(wrk_module.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(wrk_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        wrk_module.subprocess,
        "run",
        lambda args, **kw: subprocess.CompletedProcess(args, 100, "", "E: Unable to locate package wrk"),
    )
    with pytest.raises(WrkError, match="Unable to locate package wrk"):
        wrk_module.ensure_wrk()
