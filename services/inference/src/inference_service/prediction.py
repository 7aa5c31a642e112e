"""Vectorised prediction and the V1 response shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sklearn

from .model_store import LoadedModel, native
from .typed_input import numeric_frame
from .validation import MAX_REPORTED_ERRORS, InputError, Problem

# Up to this many rows v1_json encodes v1_body itself: its numpy set-up costs more than a few
# dicts (5.5 vs 1.9 us for one row; they break even near 10 rows).
SMALL_BATCH_ROWS = 8
# scikit-learn's own words on input it refuses, cut to this length.
MAX_MODEL_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Predictions:
    """A classifier's labels (and probabilities when it has them) or a regressor's values."""

    labels: list[Any]  # classifiers: per row, a class; regressors: empty
    probabilities: np.ndarray | None  # rows x classes, in ``classes`` order
    classes: tuple[Any, ...]
    label_index: np.ndarray | None  # per row, the position of its label in ``classes``
    values: np.ndarray | None = None  # regressors: per row, the prediction

    @property
    def rows(self) -> int:
        return len(self.values) if self.values is not None else len(self.labels)


def predict(model: LoadedModel, data: np.ndarray | pd.DataFrame) -> Predictions:
    """One vectorised call for the whole batch.

    ``data`` is a float matrix from ``validation``/``csv_io``/``v2_protocol`` (all-numeric
    models), which already reject NaN and infinities, or a frame from ``typed_input``.
    For a matrix, telling scikit-learn it is finite skips its own scan (about a quarter of
    the time of a one-row prediction); the setting is thread-local, so it is safe here.
    Models ``fast_linear`` compiled skip scikit-learn's per-call checks altogether, and
    their label is the most probable class (what ``predict`` returns for them).
    """
    # Finite but extreme inputs (1e308) can overflow inside the pipeline; such rows are
    # reported below instead of warning in the logs or answering NaN.
    fast = model.fast_proba
    if (
        fast is not None
        and type(data) is np.ndarray
        and data.dtype == np.float64
        and data.ndim == 2
        and data.shape[1] == len(model.features)
    ):
        with np.errstate(over="ignore", invalid="ignore"):
            return _classified(model, fast(data), None)
    return _with_estimator(model, data)


def _with_estimator(model: LoadedModel, data: np.ndarray | pd.DataFrame) -> Predictions:
    estimator = model.estimator
    # Matrices hold no NaN unless a column may be missing (V2's float tensor).
    matrix = type(data) is np.ndarray
    finite = matrix and model.schema.matrix_ready
    features: np.ndarray | pd.DataFrame = data
    if matrix and model.wants_frame:
        features = numeric_frame(model.schema, data)
    elif isinstance(data, pd.DataFrame) and not model.wants_frame:
        # Fitted on an array: column names would only earn a warning.
        features = data.to_numpy(dtype=np.float64 if model.schema.numeric else None)
    try:
        with sklearn.config_context(assume_finite=finite), np.errstate(over="ignore", invalid="ignore"):
            if not model.is_classifier:
                return _regressed(np.asarray(estimator.predict(features), dtype=np.float64))
            probabilities = estimator.predict_proba(features) if model.metadata.probabilities else None
            labels = None if probabilities is not None and model.labels_from_proba else estimator.predict(features)
    except (ValueError, TypeError) as exc:
        # What the schema checks let through and the pipeline still refuses is the client's
        # data, not a server fault: say what scikit-learn said.
        text = str(exc)
        text = text if len(text) <= MAX_MODEL_MESSAGE else text[: MAX_MODEL_MESSAGE - 3] + "..."
        raise InputError(
            [Problem(("body",), f"the model cannot score this input: {text}", "value_error.model")]
        ) from None
    return _classified(model, probabilities, labels)


def _unscorable(bad: np.ndarray) -> InputError:
    rows = np.flatnonzero(bad)[:MAX_REPORTED_ERRORS].tolist()
    return InputError(
        [
            Problem(("body", row), f"row {row}: values too extreme for the model to score", "value_error.range")
            for row in rows
        ]
    )


def _regressed(values: np.ndarray) -> Predictions:
    values = values.reshape(len(values), -1)[:, 0] if values.ndim > 1 else values
    unscorable = ~np.isfinite(values)
    if unscorable.any():
        raise _unscorable(unscorable)
    return Predictions(labels=[], probabilities=None, classes=(), label_index=None, values=values)


def _classified(model: LoadedModel, probabilities: np.ndarray | None, labels: Any) -> Predictions:
    classes = model.classes
    if probabilities is not None:
        unscorable = ~np.isfinite(probabilities).all(axis=1)
        if unscorable.any():
            raise _unscorable(unscorable)
    if labels is None:
        assert probabilities is not None
        label_index = probabilities.argmax(axis=1)
        return Predictions(
            labels=[classes[i] for i in label_index.tolist()],
            probabilities=probabilities,
            classes=classes,
            label_index=label_index,
        )
    position = {c: i for i, c in enumerate(classes)}
    listed = [native(label) for label in np.asarray(labels).tolist()]
    label_index = np.fromiter((position[label] for label in listed), dtype=np.intp, count=len(listed))
    return Predictions(labels=listed, probabilities=probabilities, classes=classes, label_index=label_index)


def v1_body(model: LoadedModel, result: Predictions) -> dict[str, Any]:
    """The V1 answer as Python objects: the reference for ``v1_json``, which encodes the same.

    Per row: ``{"label", "probabilities"}`` for a classifier with ``predict_proba``,
    ``{"label"}`` for one without, ``{"value"}`` for a regressor.
    """
    predictions: list[dict[str, Any]]
    if result.values is not None:
        predictions = [{"value": value} for value in result.values.tolist()]
    elif result.probabilities is None:
        predictions = [{"label": label} for label in result.labels]
    else:
        keys = [str(c) for c in result.classes]
        predictions = [
            {"label": label, "probabilities": dict(zip(keys, row, strict=True))}
            for label, row in zip(result.labels, result.probabilities.tolist(), strict=True)
        ]
    return {"model": model.name, "version": model.version, "predictions": predictions}


def v1_json(model: LoadedModel, result: Predictions) -> bytes:
    """``orjson.dumps(v1_body(...))``, byte for byte, without a dict per row.

    A dict per row and per row's probabilities cost ~30 ms for 10,000 rows; here every
    probability is formatted in one orjson call on the numpy array (the same shortest
    round-trip text it writes for a Python float) and the rows are stitched from
    constant pieces, so the Python work per row is a few C-level list operations.
    """
    rows = len(result.labels)
    if (0 < rows <= SMALL_BATCH_ROWS) or result.probabilities is None or result.label_index is None:
        return orjson.dumps(v1_body(model, result), option=orjson.OPT_SERIALIZE_NUMPY)
    probabilities = np.ascontiguousarray(result.probabilities, dtype=np.float64)
    width = probabilities.shape[1]
    keys = [orjson.dumps(str(c)) for c in result.classes]
    head = b'{"model":' + orjson.dumps(model.name) + b',"version":' + orjson.dumps(model.version) + b',"predictions":['
    if rows == 0:
        return head + b"]}"
    # Row layout: starts[label] v0 ,"k1": v1 ... ,"kn": vn }},
    starts = np.empty(len(result.classes), dtype=object)
    starts[:] = [
        b'{"label":' + orjson.dumps(c, option=orjson.OPT_SERIALIZE_NUMPY) + b',"probabilities":{' + keys[0] + b":"
        for c in result.classes
    ]
    parts = np.empty((rows, 2 * width + 1), dtype=object)
    parts[:, 0] = starts[result.label_index]
    values = orjson.dumps(probabilities.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    parts[:, 1 : 2 * width : 2] = np.array(values, dtype=object).reshape(rows, width)
    for column in range(1, width):
        parts[:, 2 * column] = b"," + keys[column] + b":"
    parts[:, 2 * width] = b"}},"
    body = b"".join(parts.ravel().tolist())
    return head + body[:-1] + b"]}"
