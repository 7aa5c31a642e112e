"""``predict_proba`` for the linear pipelines ``train`` builds, without scikit-learn's per-call overhead.

For one row, ``Pipeline(StandardScaler, LogisticRegression).predict_proba`` spends ~0.2 ms
in input validation, tag lookups and dataframe detection around a few microseconds of
arithmetic; that was most of a small prediction's CPU. The arithmetic below is the same
numpy operations, in the same order, that scikit-learn runs on a float64 matrix, so the
probabilities are bit-for-bit the same. Only exact, known types are compiled, and every
compiled function is checked against the estimator at load time: anything else (or a
scikit-learn release that computes differently) keeps using the estimator itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import sklearn
from scipy import special
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.extmath import softmax

log = logging.getLogger(__name__)

ProbaFunction = Callable[[np.ndarray], np.ndarray]


def _scaler(step: StandardScaler) -> Callable[[np.ndarray], np.ndarray] | None:
    mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
    scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None
    if (step.with_mean and mean is None) or (step.with_std and scale is None):
        return None

    def transform(matrix: np.ndarray) -> np.ndarray:
        # StandardScaler copies its input (copy=True by default), then works in place.
        out = matrix.copy()
        if mean is not None:
            out -= mean
        if scale is not None:
            out /= scale
        return out

    return transform


def _logistic(step: LogisticRegression) -> ProbaFunction | None:
    coef = np.asarray(step.coef_)
    intercept = np.asarray(step.intercept_)
    if coef.ndim != 2 or coef.dtype != np.float64 or intercept.dtype != np.float64:
        return None
    binary = np.size(step.classes_) <= 2
    if binary and coef.shape[0] != 1:
        return None
    coef_t = coef.T

    def proba(matrix: np.ndarray) -> np.ndarray:
        scores = matrix @ coef_t + intercept
        if binary:
            # LinearClassifierMixin._predict_proba_lr for one decision column.
            prob = scores.reshape(-1)
            special.expit(prob, out=prob)
            return np.stack([1 - prob, prob], axis=1)
        # scikit-learn is untyped; with copy=False softmax normalises ``scores`` in place and returns it.
        normalised: np.ndarray = softmax(scores, copy=False)
        return normalised

    return proba


def _compile(estimator: Any) -> ProbaFunction | None:
    # Exact types only: a subclass may override any of the methods mirrored here.
    if type(estimator) is LogisticRegression:
        return _logistic(estimator)
    if type(estimator) is not Pipeline or len(estimator.steps) != 2:
        return None
    (_, first), (_, last) = estimator.steps
    if type(first) is not StandardScaler or type(last) is not LogisticRegression:
        return None
    transform = _scaler(first)
    proba = _logistic(last)
    if transform is None or proba is None:
        return None
    return lambda matrix: proba(transform(matrix))


def _probe_rows(n_features: int) -> np.ndarray:
    rng = np.random.default_rng(20240601)
    rows = rng.normal(0.0, 50.0, size=(32, n_features))
    rows[0] = 0.0
    rows[1] = 1e6
    return rows


def compile_predict_proba(estimator: Any, n_features: int) -> ProbaFunction | None:
    """A function equal to ``estimator.predict_proba`` on finite float64 ``[rows, n_features]``
    input, or None when the estimator is not one this module knows or the check fails."""
    try:
        fast = _compile(estimator)
        if fast is None:
            return None
        probe = _probe_rows(n_features)
        with sklearn.config_context(assume_finite=True), np.errstate(over="ignore", invalid="ignore"):
            expected = estimator.predict_proba(probe)
            matches = all(
                np.array_equal(fast(rows), estimator.predict_proba(rows), equal_nan=True)
                for rows in (probe[:1], probe[1:2], probe[2:3])
            ) and np.array_equal(fast(probe), expected, equal_nan=True)
    except Exception as exc:  # an unexpected fitted state: the estimator itself still works
        log.warning("no fast predict_proba for %s: %r", type(estimator).__name__, exc)
        return None
    if not matches:
        log.warning("fast predict_proba differs from %s; using the estimator", type(estimator).__name__)
        return None
    return fast
