"""``fast_linear``: the same probabilities as scikit-learn, bit for bit, or no fast path at all."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inference_service import fast_linear
from inference_service.fast_linear import compile_predict_proba
from inference_service.model_store import LoadedModel, load_registry
from inference_service.prediction import predict
from inference_service.validation import InputError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler


def fitted(estimator: Any, classes: int, features: int = 4) -> Any:
    rng = np.random.default_rng(7)
    x = rng.normal(10.0, 5.0, size=(300, features))
    y = (x[:, 0] > 10).astype(int) + (classes > 2) * (x[:, 1] > 12).astype(int)
    return estimator.fit(x, y)


def rows(features: int) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    batch = rng.normal(10.0, 30.0, size=(257, features))
    return [batch, batch[:1], batch[5:6], np.zeros((1, features)), np.full((2, features), 1e200)]


def test_trained_model_is_compiled_and_identical_to_sklearn(model_dir: Path) -> None:
    model = load_registry(model_dir).get("diabetes")
    assert model is not None and model.fast_proba is not None
    for matrix in rows(8):
        with np.errstate(over="ignore", invalid="ignore"):
            assert np.array_equal(model.fast_proba(matrix), model.estimator.predict_proba(matrix), equal_nan=True)


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
def test_pipelines_match_sklearn(classes: int, with_mean: bool, with_std: bool) -> None:
    scaler = StandardScaler(with_mean=with_mean, with_std=with_std)
    estimator = fitted(Pipeline([("scale", scaler), ("model", LogisticRegression(max_iter=1000))]), classes)
    fast = compile_predict_proba(estimator, 4)
    assert fast is not None
    for matrix in rows(4):
        with np.errstate(over="ignore", invalid="ignore"):
            assert np.array_equal(fast(matrix), estimator.predict_proba(matrix), equal_nan=True)


def test_a_bare_logistic_regression_matches_sklearn() -> None:
    estimator = fitted(LogisticRegression(max_iter=1000), 3)
    fast = compile_predict_proba(estimator, 4)
    assert fast is not None
    assert np.array_equal(fast(rows(4)[0]), estimator.predict_proba(rows(4)[0]))


def test_input_is_not_modified() -> None:
    estimator = fitted(Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]), 2)
    fast = compile_predict_proba(estimator, 4)
    assert fast is not None
    matrix = rows(4)[0]
    before = matrix.copy()
    fast(matrix)
    assert np.array_equal(matrix, before)


class TunedLogisticRegression(LogisticRegression):
    """A subclass may change predict_proba, so it is never compiled."""


@pytest.mark.parametrize(
    "estimator",
    [
        Pipeline([("scale", MinMaxScaler()), ("model", LogisticRegression())]),
        Pipeline([("scale", StandardScaler()), ("model", TunedLogisticRegression())]),
        TunedLogisticRegression(),
    ],
    ids=["other-scaler", "subclass-in-pipeline", "subclass"],
)
def test_unknown_estimators_are_not_compiled(estimator: Any) -> None:
    assert compile_predict_proba(fitted(estimator, 2), 4) is None


def test_a_compiled_function_that_disagrees_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    estimator = fitted(Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]), 2)
    monkeypatch.setattr(fast_linear, "_compile", lambda _: lambda matrix: estimator.predict_proba(matrix) + 1e-16)
    assert compile_predict_proba(estimator, 4) is None


def test_a_compiler_error_falls_back_to_the_estimator(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: Any) -> None:
        raise AttributeError("mean_")

    monkeypatch.setattr(fast_linear, "_compile", broken)
    estimator = fitted(Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]), 2)
    assert compile_predict_proba(estimator, 4) is None


def outcome(model: LoadedModel, matrix: np.ndarray) -> Any:
    try:
        result = predict(model, matrix)
    except InputError as exc:
        return [p.loc for p in exc.problems]
    return result.labels, result.probabilities.tobytes()


def test_predict_answers_extreme_rows_as_the_estimator_does(model_dir: Path) -> None:
    model = load_registry(model_dir).get("diabetes")
    assert model is not None and model.fast_proba is not None
    slow = replace(model, fast_proba=None)
    signs = np.where(np.arange(8) % 2 == 0, 1.0, -1.0)
    extremes = (np.full((3, 8), 1e308), signs * 1e308, np.full((1, 8), -1e300), np.array([[1e-300] * 8]))
    for matrix in extremes:
        assert outcome(model, np.atleast_2d(matrix)) == outcome(slow, np.atleast_2d(matrix))
