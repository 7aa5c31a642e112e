"""The issue's targets, computed from one run's numbers (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .wrk import WrkResult

Runs = Mapping[tuple[str, int], WrkResult]


@dataclass(frozen=True)
class LogIngest:
    answered: int  # requests wrk got a response for during the secured-path scenario
    rows: int  # request_log rows written for that scenario

    # wrk stops with requests in flight; the gateway still answers and logs them, so rows may
    # exceed answered by up to the connection count of each run. Those are not missing rows.
    @property
    def missing(self) -> int:
        return max(0, self.answered - self.rows)

    @property
    def extra(self) -> int:
        return max(0, self.rows - self.answered)

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "missing": self.missing, "extra": self.extra}


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    limit: float
    comparison: str  # ">=" or "<="
    unit: str
    detail: str

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.comparison == ">=" else self.value <= self.limit

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]

    def describe(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.3g}{self.unit}"
        return (
            f"{self.verdict:4}  {self.name}: {shown} (target {self.comparison} {self.limit:g}{self.unit}) {self.detail}"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _batch_target(label: str, run: WrkResult | None, inprocess: float | None) -> Target:
    gateway_rows = run.rps * 10_000 if run else None
    return Target(
        f"10,000-row batch via gateway ({label}) vs in-process rows/s (c=1)",
        _ratio(gateway_rows, inprocess),
        0.25,
        ">=",
        "x",
        f"({gateway_rows:,.0f} vs {inprocess:,.0f} rows/s)" if gateway_rows is not None and inprocess else "",
    )


def evaluate(
    runs: Runs,
    inprocess_rows_per_s: Mapping[int, float],
    log_ingest: LogIngest | None,
    cpu_ms_per_request: Mapping[tuple[str, int], float] | None = None,
) -> list[Target]:
    """The issue's targets; ``cpu_ms_per_request`` (server CPU per request, all processes) adds a
    cross-check of the throughput ratio that other load on the machine cannot skew."""
    cpu = cpu_ms_per_request or {}

    def get(name: str, conc: int) -> WrkResult | None:
        return runs.get((name, conc))

    base16, sec16, sec1, inf1 = get("baseline", 16), get("secured", 16), get("secured", 1), get("inference_direct", 1)
    storm_health, storm_predict = get("storm_healthz", 1), get("storm_predict", 1)

    return [
        Target(
            "secured req/s vs baseline (c=16)",
            _ratio(sec16.rps if sec16 else None, base16.rps if base16 else None),
            0.5, ">=", "x",
            f"({sec16.rps:.0f} vs {base16.rps:.0f} req/s)" if sec16 and base16 else "",
        ),
        Target(
            "cross-check: same ratio from server CPU per request (c=16)",
            _ratio(cpu.get(("baseline", 16)), cpu.get(("secured", 16))),
            0.5, ">=", "x",
            f"({cpu[('baseline', 16)]:.2f} vs {cpu[('secured', 16)]:.2f} CPU ms/request)"
            if ("baseline", 16) in cpu and ("secured", 16) in cpu else "",
        ),
        Target("secured p99 (c=16)", sec16.p99_ms if sec16 else None, 20.0, "<=", " ms", ""),
        Target(
            "gateway-added p50 (c=1)",
            (sec1.p50_ms - inf1.p50_ms) if sec1 and inf1 else None,
            1.0, "<=", " ms",
            f"(secured {sec1.p50_ms:.2f} - direct {inf1.p50_ms:.2f} ms)" if sec1 and inf1 else "",
        ),
        *(
            _batch_target(label, get(key, 1), inprocess_rows_per_s.get(10_000))
            for key, label in (("batch_10000", "V1 JSON"), ("batch_v2bin_10000", "V2 binary"))
        ),
        Target(
            "auth /healthz p99 during login storm",
            storm_health.p99_ms if storm_health else None,
            10.0, "<=", " ms", "",
        ),
        Target(
            "predict p99 during login storm vs without (c=1)",
            _ratio(storm_predict.p99_ms if storm_predict else None, sec1.p99_ms if sec1 else None),
            2.0, "<=", "x",
            f"({storm_predict.p99_ms:.2f} vs {sec1.p99_ms:.2f} ms)" if storm_predict and sec1 else "",
        ),
        Target(
            "log ingest rows missing",
            float(log_ingest.missing) if log_ingest else None,
            0.0, "<=", "",
            f"({log_ingest.rows} rows for {log_ingest.answered} answered)" if log_ingest else "",
        ),
    ]  # fmt: skip
