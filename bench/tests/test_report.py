import re

from bench.report import InProcess, Measurement, cpu_text_table, markdown_table, text_table
from bench.wrk import WrkResult


def measurement(**overrides) -> Measurement:
    r = WrkResult(
        requests=1000, duration_s=10.0, p50_ms=1.5, p90_ms=2.0, p99_ms=3.25, mean_ms=1.6, max_ms=9.0,
        non2xx=overrides.pop("non2xx", 0), socket_errors=0, statuses=overrides.pop("statuses", {"200": 1000}),
    )  # fmt: skip
    return Measurement("batch_100", "batch 100 rows via gateway", 16, r, rows_per_request=100)


def test_table_shows_rows_per_second_and_error_codes() -> None:
    m = measurement(non2xx=3, statuses={"200": 997, "429": 3})
    text = text_table([m], [InProcess(rows_per_call=100, calls=500, seconds=2.0)])
    lines = text.splitlines()
    assert lines[0].split()[0] == "scenario" and set(lines[1]) <= {"-", " "}
    assert "10,000" in lines[2]  # 100 req/s x 100 rows
    assert "3 (429x3)" in lines[2]
    assert "25,000" in lines[3]  # 250 calls/s x 100 rows


def test_markdown_table_has_one_row_per_measurement() -> None:
    table = markdown_table([measurement(), measurement()], [])
    assert len(table.splitlines()) == 4
    assert all(line.startswith("|") and line.endswith("|") for line in table.splitlines())


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_in_process_rows_show_their_own_cpu_per_call() -> None:
    ceiling = InProcess(rows_per_call=10_000, calls=20, seconds=2.0, label="in-process x", cpu_s=1.5, core_busy_s=1.9)
    header, _, row = cpu_text_table([measurement()], [ceiling]).splitlines()
    assert cells(header) == ["scenario", "c", "in-process", "total", "servers busy", "CPU busy (all)"]
    # 1.5 s of CPU over 20 calls; it ran 75% of the 2 s, the CPU was busy 95% with anything.
    assert cells(row) == ["in-process x", "1", "75.000", "75.000", "75%", "95%"]
    assert ceiling.to_dict()["cpu_ms_per_call"] == 75.0
