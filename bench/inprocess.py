"""In-process ceilings: the same prediction called back to back in Python, no HTTP at all."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .cpu_usage import core_busy_seconds
from .report import InProcess


def repeat(
    call: Callable[[], object],
    rows: int,
    seconds: float,
    warmup: float,
    *,
    cpu: int | None = None,
    key: str = "batch",
    label: str = "",
) -> InProcess:
    """Call ``call`` (``rows`` rows each time) back to back for ``seconds`` after ``warmup``.

    Besides wall time, records this process's CPU time and how busy CPU ``cpu`` (the one this
    process is pinned to) was with anything: wall time alone counts other load on the machine
    as the call's cost; CPU time does not."""
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        call()
    calls = 0
    core_before, cpu_before = core_busy_seconds(cpu), time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline or calls == 0:
        call()
        calls += 1
    used = time.process_time() - cpu_before
    core_after = core_busy_seconds(cpu)
    core = None if core_before is None or core_after is None else core_after - core_before
    return InProcess(rows, calls, now - start, key=key, label=label, cpu_s=used, core_busy_s=core)


def measure(estimator: Any, matrix: np.ndarray, seconds: float, warmup: float, cpu: int | None = None) -> InProcess:
    """The batch scenario's ceiling: ``predict_proba`` on the default model's rows."""
    return repeat(lambda: estimator.predict_proba(matrix), len(matrix), seconds, warmup, cpu=cpu)
