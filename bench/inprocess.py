"""The in-process ceiling for batches: predict_proba on the same rows, no HTTP at all."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .report import InProcess


def measure(estimator: Any, matrix: np.ndarray, seconds: float, warmup: float) -> InProcess:
    """Call predict_proba back to back for ``seconds`` (after ``warmup``) and count rows."""
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        estimator.predict_proba(matrix)
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline or calls == 0:
        estimator.predict_proba(matrix)
        calls += 1
    return InProcess(rows_per_call=len(matrix), calls=calls, seconds=now - start)
