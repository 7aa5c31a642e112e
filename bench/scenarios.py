"""The bench scenarios: each one a wrk load (or three at once) against the running servers."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from modelgate_shared.stack import Stack

from . import (
    baseline_server,
    byo_models,
    cpu_usage,
    inprocess,
    model_file,
    payloads,
    pinning,
    profiling,
    report,
    rollout,
    stack_setup,
)
from .targets import LogIngest, Target
from .wrk import Load, WrkResult, WrkRun

SCENARIOS = (
    "baseline", "inference_direct", "secured", "v2", "batch", "byo_mixed", "byo_forest", "rollout", "login_storm",
)  # fmt: skip
BATCH_SIZES = (100, 10_000)
BYO_SIZES = (1, 10_000)
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
PREDICT_PATH = "/v1/models/diabetes/predict"


class ScenarioError(RuntimeError):
    """A scenario cannot run (e.g. its probe request failed); the message says why."""


@dataclass(frozen=True)
class Options:
    duration: float = 10.0
    warmup: float = 2.0
    concurrency: tuple[int, ...] = (1, 16)
    storm_concurrency: int = 16
    scenarios: tuple[str, ...] = SCENARIOS
    results_dir: Path = Path(__file__).resolve().parent / "results"
    # Written as <name>.json and <name>.md in results_dir.
    name: str = "latest"
    # Scenario keys (e.g. "secured") whose measured runs are profiled with py-spy.
    profile: tuple[str, ...] = ()
    # Extra environment for the stack: experiments only, recorded in the results.
    stack_env: tuple[tuple[str, str], ...] = ()


@dataclass
class Outcome:
    measurements: list[report.Measurement] = field(default_factory=list)
    inprocess: list[report.InProcess] = field(default_factory=list)
    log_ingest: LogIngest | None = None
    rollout: rollout.Rollout | None = None
    targets: list[Target] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    affinity: dict[str, list[int]] = field(default_factory=dict)

    def runs(self) -> dict[tuple[str, int], WrkResult]:
        return {(m.key, m.concurrency): m.result for m in self.measurements}


def probe(load: Load) -> httpx.Response:
    """One request before the load, so a broken route fails with its body, not 10 s of errors."""
    headers = {"Content-Type": load.content_type} if load.content_type else {}
    if load.token:
        headers["Authorization"] = f"Bearer {load.token}"
    headers.update(dict(load.headers))
    response = httpx.request(load.method, load.url, content=load.body, headers=headers, timeout=60)
    if not 200 <= response.status_code < 300:
        raise ScenarioError(f"{load.method} {load.url} -> {response.status_code}: {response.text[:500]}")
    return response


class Bench:
    def __init__(self, options: Options, wrk: str, plan: pinning.Plan) -> None:
        self.options = options
        self.wrk = wrk
        self.plan = plan
        self.outcome = Outcome()
        self.pids: dict[str, int] = {}
        self.groups = cpu_usage.ProcessGroups({})
        self.profiler = profiling.Profiler(options.results_dir / "profiles", plan.load_cpu) if options.profile else None

    # -- load ------------------------------------------------------------------

    def _wrk(self, load: Load, connections: int, seconds: float) -> WrkRun:
        return WrkRun(self.wrk, load, connections=connections, duration_s=seconds, cpu=self.plan.load_cpu)

    def measure(
        self, key: str, label: str, load: Load, concurrency: int, rows_per_request: int = 1
    ) -> tuple[report.Measurement, int]:
        """Warm up, then measure; returns the measurement and every request answered (both phases)."""
        warmed = self._wrk(load, concurrency, self.options.warmup).wait().requests if self.options.warmup else 0
        recording: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.profiler is not None and any(key.startswith(p) for p in self.options.profile):
            recording = self.profiler.recording(f"{key}-c{concurrency}", self.pids, self.options.duration)
        before, core_before = self.groups.snapshot(), cpu_usage.core_busy_seconds(self.plan.server_cpu)
        with recording:
            result = self._wrk(load, concurrency, self.options.duration).wait()
        cpu = cpu_usage.spent(before, self.groups.snapshot())
        core = _delta(core_before, cpu_usage.core_busy_seconds(self.plan.server_cpu))
        m = report.Measurement(key, label, concurrency, result, rows_per_request, cpu, core)
        self.outcome.measurements.append(m)
        print(f"  {label:<44} c={concurrency:<3} {result.rps:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
              f"p99 {result.p99_ms:8.2f} ms  errors {result.errors}", flush=True)  # fmt: skip
        return m, warmed + result.requests

    def scenario(self, key: str, label: str, load: Load, rows_per_request: int = 1) -> int:
        probe(load)
        return sum(self.measure(key, label, load, c, rows_per_request)[1] for c in self.options.concurrency)

    # -- scenarios ---------------------------------------------------------------

    def baseline(self, model_dir: Path, logs: Path) -> None:
        with baseline_server.running(model_dir, cpu=self.plan.server_cpu, log_path=logs / "baseline.log") as (
            url,
            pid,
        ):
            self.outcome.affinity.update(pinning.affinity_report([pid]))
            outer = self.pids, self.groups
            self.pids, self.groups = {"baseline": pid}, cpu_usage.ProcessGroups({"baseline": pid})
            try:
                load = Load(f"{url}{PREDICT_PATH}", "POST", payloads.v1_predict(), JSON)
                self.scenario("baseline", "baseline: bare FastAPI, 1 row", load)
            finally:
                self.pids, self.groups = outer

    def inference_direct(self, stack: Stack, token: str) -> None:
        load = Load(f"{stack.url('inference')}{PREDICT_PATH}", "POST", payloads.v1_predict(), JSON, token)
        self.scenario("inference_direct", "inference direct /v1 predict", load)

    def secured(self, stack: Stack, token: str) -> None:
        assert stack.postgres is not None
        db = stack.postgres.url
        before = _settled_count(db)
        load = Load(f"{stack.gateway_url}{PREDICT_PATH}", "POST", payloads.v1_predict(), JSON, token)
        # The probe is answered and logged too.
        answered = 1 + self.scenario("secured", "secured: gateway /v1 predict", load)
        rows = _settled_count(db, want=before + answered) - before
        self.outcome.log_ingest = LogIngest(answered=answered, rows=rows)
        print(f"  log ingest: {answered} requests answered, {rows} request_log rows", flush=True)

    def v2(self, stack: Stack, token: str) -> None:
        name = v2_input_name(stack, token)
        load = Load(f"{stack.gateway_url}/v2/models/diabetes/infer", "POST", payloads.v2_infer(name), JSON, token)
        self.scenario("v2", "V2 infer via gateway", load)

    def batch(self, stack: Stack, token: str) -> None:
        model = model_file.load(stack.model_dir)
        input_name = v2_input_name(stack, token)
        for size in BATCH_SIZES:
            load = Load(f"{stack.gateway_url}{PREDICT_PATH}", "POST", payloads.v1_predict(size), JSON, token)
            self.scenario(f"batch_{size}", f"batch {size:,} rows via gateway, V1 JSON", load, rows_per_request=size)
            body, header_length = payloads.v2_infer_binary(size, input_name)
            load = Load(
                f"{stack.gateway_url}/v2/models/diabetes/infer",
                "POST",
                body,
                "application/octet-stream",
                token,
                headers=(("Inference-Header-Content-Length", str(header_length)),),
            )
            self.scenario(
                f"batch_v2bin_{size}", f"batch {size:,} rows via gateway, V2 binary", load, rows_per_request=size
            )
            # Same CPU as the servers (idle now), so the ratio compares like with like.
            with pinning.pinned(self.plan.server_cpu):
                result = inprocess.measure(
                    model.estimator, payloads.matrix(size), self.options.duration, self.options.warmup,
                    cpu=self.plan.server_cpu,
                )  # fmt: skip
            self.outcome.inprocess.append(result)
            print(f"  in-process predict_proba {size:,} rows: {result.rows_per_s:,.0f} rows/s", flush=True)

    def byo(self, stack: Stack, token: str, scenario: str) -> None:
        """A registered bring-your-own model: 1 and 10,000 rows through the gateway (V1 JSON
        records), then the same rows in-process, parsed and predicted by inference's own code."""
        spec = byo_models.MODELS[scenario]
        model = model_file.load(stack.model_dir, spec.name)
        for size in BYO_SIZES:
            body = byo_models.v1_predict(spec, size)
            rows = "1 row" if size == 1 else f"{size:,} rows"
            load = Load(f"{stack.gateway_url}{spec.predict_path}", "POST", body, JSON, token)
            self.scenario(f"{scenario}_{size}", f"{spec.label}: {rows} via gateway, V1 JSON", load, size)
            instances = json.loads(body)["instances"]
            timed = (
                ("parse_predict", f"in-process {spec.label}: records_input + predict, {rows}",
                 partial(byo_models.parse_and_predict, model, instances)),
                ("body_to_answer", f"in-process {spec.label}: JSON body to answer, {rows}",
                 partial(byo_models.body_to_answer, model, body)),
            )  # fmt: skip
            for kind, label, call in timed:
                # Same CPU as the servers (idle now), so the ratio compares like with like.
                with pinning.pinned(self.plan.server_cpu):
                    result = inprocess.repeat(
                        call, size, self.options.duration, self.options.warmup,
                        cpu=self.plan.server_cpu, key=f"{scenario}_{kind}", label=label,
                    )  # fmt: skip
                self.outcome.inprocess.append(result)
                cpu_ms = 1000 * (result.cpu_s or 0.0) / result.calls
                print(f"  {label:<60} {result.rows_per_s:12,.0f} rows/s  CPU {cpu_ms:8.3f} ms/call", flush=True)

    def rollout(self, stack: Stack, admin_token: str) -> None:
        """Upload the mixed pipeline as a new default version, round after round, and time how
        soon predictions come from it (``bench/rollout.py``). The first upload creates the model
        and is never measured; more rounds warm up for --warmup seconds, then rounds run for
        --duration seconds (at least MIN_ROUNDS, at most MAX_ROUNDS)."""
        body = rollout.mixed_upload()
        predict_body = byo_models.v1_predict(rollout.SPEC, 1)
        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60) as client:
            start = time.monotonic()
            created = rollout.run_round(client, body, predict_body)
            while time.monotonic() - start < self.options.warmup:
                rollout.run_round(client, body, predict_body)
            rounds: list[rollout.Round] = []
            before, start = self.groups.snapshot(), time.monotonic()
            while len(rounds) < rollout.MAX_ROUNDS and (
                len(rounds) < rollout.MIN_ROUNDS or time.monotonic() - start < self.options.duration
            ):
                rounds.append(rollout.run_round(client, body, predict_body))
            cpu = cpu_usage.spent(before, self.groups.snapshot())
        result = rollout.Rollout(tuple(rounds), len(body.content), cpu)
        self.outcome.rollout = result
        print(f"  model {rollout.MODEL!r} created as version {created.version}; measured versions "
              f"{rounds[0].version}-{rounds[-1].version}", flush=True)  # fmt: skip
        for line in report.rollout_text(result).splitlines():
            print(f"  {line}", flush=True)

    def login_storm(self, stack: Stack, user: stack_setup.BenchUser, token: str) -> None:
        storm = Load(f"{stack.gateway_url}/auth/token", "POST", payloads.login_form(user.username, user.password), FORM)
        health = Load(f"{stack.url('auth')}/healthz")
        predict = Load(f"{stack.gateway_url}{PREDICT_PATH}", "POST", payloads.v1_predict(), JSON, token)
        for load in (storm, health, predict):
            probe(load)
        plan = [
            ("storm_login", "login storm: /auth/token via gateway", storm, self.options.storm_concurrency),
            ("storm_healthz", "  during storm: auth /healthz", health, 1),
            ("storm_predict", "  during storm: predict via gateway", predict, 1),
        ]
        # No warm-up phase here: the 16 hashes a warm-up leaves unfinished keep running after wrk
        # hangs up and would eat into the measured window. The probes above warmed every route.
        seconds = self.options.duration
        recording: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.profiler is not None and "login_storm" in self.options.profile:
            recording = self.profiler.recording("login_storm", self.pids, seconds)
        before, core_before = self.groups.snapshot(), cpu_usage.core_busy_seconds(self.plan.server_cpu)
        with recording:
            running = [self._wrk(load, conc, seconds) for _, _, load, conc in plan]
            try:
                results = [run.wait() for run in running]
            finally:
                for run in running:
                    run.kill()
        cpu = cpu_usage.spent(before, self.groups.snapshot())
        core = _delta(core_before, cpu_usage.core_busy_seconds(self.plan.server_cpu))
        for (key, label, _, conc), result in zip(plan, results, strict=True):
            # The CPU split belongs to the three loads together: recorded once, on the storm row.
            share, core_share = (cpu, core) if key == "storm_login" else ({}, None)
            self.outcome.measurements.append(report.Measurement(key, label, conc, result, 1, share, core_share))
            print(f"  {label:<44} c={conc:<3} {result.rps:9.1f} req/s  p99 {result.p99_ms:8.2f} ms  "
                  f"errors {result.errors}", flush=True)  # fmt: skip


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def v2_input_name(stack: Stack, token: str) -> str:
    """The tensor name the model's V2 metadata declares (the protocol's own discovery)."""
    response = httpx.get(
        f"{stack.gateway_url}/v2/models/diabetes", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    inputs = response.json().get("inputs") if response.status_code == 200 else None
    if inputs and isinstance(inputs[0], dict) and isinstance(inputs[0].get("name"), str):
        return str(inputs[0]["name"])
    return "input-0"


def _settled_count(database_url: str, want: int | None = None, timeout: float = 30.0) -> int:
    """request_log rows once the gateway's batched writer has caught up: ``want`` reached,
    or the count unchanged for 2 s."""
    deadline = time.monotonic() + timeout
    last, stable_since = stack_setup.request_log_rows(database_url), time.monotonic()
    while time.monotonic() < deadline:
        if want is not None and last >= want:
            # Give in-flight stragglers (answered after wrk stopped) a moment to land too.
            time.sleep(1.0)
            return stack_setup.request_log_rows(database_url)
        if time.monotonic() - stable_since >= 2.0:
            return last
        time.sleep(0.25)
        now = stack_setup.request_log_rows(database_url)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last
