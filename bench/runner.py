"""One bench run: wrk, the stack, every scenario in order, then the report."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import psutil
from modelgate_shared.stack import Stack, StackError
from modelgate_shared.testing import training_data_source

from . import byo_models, cpu_usage, machine, pinning, report, rollout, stack_setup
from .scenarios import Bench, Options, Outcome, ScenarioError
from .targets import evaluate
from .wrk import ensure_wrk, wrk_version


@contextlib.contextmanager
def _guard(outcome: Outcome, name: str) -> Iterator[None]:
    """A failed scenario is reported and the others still run."""
    try:
        yield
    except (ScenarioError, RuntimeError, httpx.HTTPError, OSError) as exc:
        message = f"{name}: {exc}"
        outcome.problems.append(message)
        print(f"  FAILED {message}", file=sys.stderr, flush=True)


def _train_model(model_dir: Path) -> None:
    """For a baseline-only run: the same training step the launcher runs, without the stack."""
    env = {
        **os.environ,
        "MODELGATE_INFERENCE_MODEL_DIR": str(model_dir),
        "MODELGATE_TRAINING_DATA": training_data_source(),
    }
    result = subprocess.run(
        [sys.executable, "-m", "inference_service.train", "--if-missing"], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ScenarioError(f"training the model failed: {(result.stderr or result.stdout).strip()[-2000:]}")


def _copy_logs(source: Path, results_dir: Path) -> Path | None:
    if not source.is_dir():
        return None
    target = results_dir / "logs"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def _context(
    options: Options,
    outcome: Outcome,
    *,
    host: dict[str, object],
    started: datetime,
    load_start: tuple[float, float, float],
    wrk: str,
    plan: pinning.Plan,
    env_note: list[str],
) -> dict[str, object]:
    """Everything needed to read the numbers later: when, where, with what, how."""
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": host,
        "versions": {**machine.versions(), "wrk": wrk_version(wrk)},
        "pinning": plan.describe(),
        "affinity": outcome.affinity,
        "settings": {
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "concurrency": list(options.concurrency),
            "login_storm_concurrency": options.storm_concurrency,
            "scenarios": list(options.scenarios),
            "wrk": "1 thread, --latency, --timeout 60s, bench/lua/request.lua",
            "uvicorn": "1 worker per service (launcher default), --no-access-log, "
            "--http modelgate_shared.client_timeouts (the baseline: uvicorn's own)",
            "bcrypt_rounds": 12,
            "rate_limits": "; ".join(env_note) or "stack not started",
            "services": "launcher defaults otherwise (log level INFO, 1 worker)",
            "training_data": training_data_source(),
            "extra_stack_env": dict(options.stack_env) or "none",
            "profiled": list(options.profile) or "no",
            "byo_models": {
                s: f"{m.name}: {m.description}" for s, m in byo_models.MODELS.items() if s in options.scenarios
            }
            or "none",
            "rollout": (
                f"model {rollout.MODEL!r}: {rollout.SPEC.description}; uploaded through the gateway with an "
                "admin token (MODELGATE_ADMIN_USERNAME/_PASSWORD set for this run)"
                if "rollout" in options.scenarios
                else "none"
            ),
        },
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "problems": outcome.problems,
    }


def run(options: Options) -> Outcome:
    wrk = ensure_wrk()
    plan = pinning.plan()
    bench = Bench(options, wrk, plan)
    outcome = bench.outcome
    needs_stack = any(s != "baseline" for s in options.scenarios)
    byo = [byo_models.MODELS[s] for s in options.scenarios if s in byo_models.MODELS]
    # Uploading versions takes the admin scope: an admin user only for the scenario that needs one.
    admin = stack_setup.new_user("bench-admin") if "rollout" in options.scenarios else None
    started = datetime.now(UTC)
    host = machine.machine()  # before this process narrows its own CPU affinity
    # Other work on the machine skews every number: record how busy it was.
    load_start = os.getloadavg()
    print(f"bench: {plan.describe()}", flush=True)
    env_note: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelgate-bench-") as tmp:
        state = Path(tmp)
        logs = state / "logs"
        stack: Stack | None = None
        try:
            if needs_stack:
                stack = stack_setup.make_stack(state, dict(options.stack_env), admin)
                _, env_note = stack_setup.bench_env()
                if byo:
                    # Before start: inference loads its model directory once, at start-up; the
                    # launcher still trains the default model into it (it looks for its own name).
                    print(f"bench: registering {', '.join(m.name for m in byo)} ...", flush=True)
                    byo_models.register(stack.model_dir, byo)
                print(f"bench: starting the stack in {state} ...", flush=True)
                with pinning.pinned(plan.server_cpu):
                    stack.start()
                bench.pids = {name: service.process.pid for name, service in stack.services.items()}
                redis = [p.pid for p in psutil.Process().children() if p.name().startswith("redis")]
                bench.groups = cpu_usage.ProcessGroups(
                    {**bench.pids, **({"redis": redis[0]} if redis else {})}, postgres_marker=str(state)
                )
                model_dir = stack.model_dir
            else:
                model_dir = state / "models"
                _train_model(model_dir)
            # From here this process only drives wrk: keep it off the server CPU.
            if plan.load_cpu is not None:
                os.sched_setaffinity(0, {plan.load_cpu})
            if stack is not None:
                # Our children (uvicorn services, Redis) plus the daemonised Postgres, found by its data dir.
                children = [p.pid for p in psutil.Process().children()]
                outcome.affinity.update(pinning.affinity_report(children, str(state)))

            if "baseline" in options.scenarios:
                print("bench: baseline", flush=True)
                with _guard(outcome, "baseline"):
                    bench.baseline(model_dir, logs)
            user = None
            if stack is not None:
                with _guard(outcome, "sign-up"):
                    user = stack_setup.sign_up(stack.gateway_url)
            if stack is not None and user is not None:
                steps: dict[str, Callable[[str], None]] = {
                    "inference_direct": lambda t: bench.inference_direct(stack, t),
                    "secured": lambda t: bench.secured(stack, t),
                    "v2": lambda t: bench.v2(stack, t),
                    "batch": lambda t: bench.batch(stack, t),
                    **{m.scenario: partial(bench.byo, stack, scenario=m.scenario) for m in byo},
                    "rollout": lambda t: bench.rollout(stack, t),
                    "login_storm": lambda t: bench.login_storm(stack, user, t),
                }
                for name, step in steps.items():
                    if name in options.scenarios:
                        print(f"bench: {name}", flush=True)
                        with _guard(outcome, name):
                            who = admin if name == "rollout" and admin is not None else user
                            step(stack_setup.access_token(stack.gateway_url, who))
            if stack is not None and (dead := stack.check_alive()):
                outcome.problems.append(f"{dead.name} exited with {dead.process.returncode} during the run")
        except StackError as exc:
            outcome.problems.append(f"the stack did not start: {exc}")
        finally:
            if stack is not None:
                stack.stop()
            if outcome.problems and (copied := _copy_logs(logs, options.results_dir)):
                print(f"bench: service logs copied to {copied}", file=sys.stderr)

    outcome.targets = evaluate(
        outcome.runs(),
        {i.rows_per_call: i.rows_per_s for i in outcome.inprocess if i.key == "batch"},
        outcome.log_ingest,
        {(m.key, m.concurrency): sum(per.values()) for m in outcome.measurements if (per := m.cpu_ms_per_request())},
    )
    context = _context(
        options, outcome, host=host, started=started, load_start=load_start, wrk=wrk, plan=plan, env_note=env_note
    )
    json_path, md_path = report.write(
        options.results_dir,
        options.name,
        measurements=outcome.measurements,
        inprocess=outcome.inprocess,
        targets=outcome.targets,
        log_ingest=outcome.log_ingest,
        context=context,
        rollout=outcome.rollout,
    )
    print()
    if outcome.measurements or outcome.inprocess:
        print(report.text_table(outcome.measurements, outcome.inprocess))
        print()
    if outcome.rollout is not None:
        print(report.rollout_text(outcome.rollout))
        print()
    if cpu_table := report.cpu_text_table(outcome.measurements, outcome.inprocess):
        print("server CPU per request (ms), from /proc accounting:")
        print(cpu_table)
        print()
    print(report.targets_text(outcome.targets))
    for problem in outcome.problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    print(f"\nwritten: {json_path} and {md_path}")
    return outcome
