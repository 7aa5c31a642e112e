"""``python -m bench``: start the stack, load it with wrk, print and write the results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .runner import run
from .scenarios import SCENARIOS, Options
from .wrk import WrkError


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _concurrency(value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not levels or any(c < 1 for c in levels):
        raise argparse.ArgumentTypeError("every concurrency level must be >= 1")
    return levels


def _scenarios(value: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    return tuple(s for s in SCENARIOS if s in chosen)


def _env_pair(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.startswith("MODELGATE_"):
        raise argparse.ArgumentTypeError(f"expected MODELGATE_NAME=VALUE, got {value!r}")
    return key, val


def parse_args(argv: Sequence[str] | None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=_positive, default=10.0, help="seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=_non_negative, default=2.0, help="seconds of warm-up per run (default 2)")
    parser.add_argument(
        "--concurrency", type=_concurrency, default=(1, 16), help="connection counts, e.g. 1,16 (default)"
    )
    parser.add_argument(
        "--only", type=_scenarios, default=SCENARIOS, help=f"comma-separated subset of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--results-dir", type=Path, default=Options.results_dir, help="where latest.json/.md go")
    parser.add_argument("--name", default=None, help="results file stem (default latest; profiled with --profile)")
    parser.add_argument(
        "--profile",
        type=_scenarios,
        default=(),
        help="py-spy the servers during these scenarios' measured runs (e.g. secured,batch); "
        "profiles go to <results-dir>/profiles/",
    )
    parser.add_argument(
        "--env",
        action="append",
        type=_env_pair,
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the stack, for experiments (repeatable; recorded in the results)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        scenarios=args.only,
        results_dir=args.results_dir,
        name=args.name or ("profiled" if args.profile else "latest"),
        profile=args.profile,
        stack_env=tuple(args.env),
    ), args.strict


def main(argv: Sequence[str] | None = None) -> int:
    options, strict = parse_args(argv)
    try:
        outcome = run(options)
    except WrkError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if outcome.problems:
        return 1
    if strict and any(t.passed is False for t in outcome.targets):
        return 1
    return 0
