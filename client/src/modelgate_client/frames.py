"""Rows in, predictions out, in the caller's shape: dicts, a pandas DataFrame or a numpy array.

numpy and pandas are optional: they are imported only when the caller hands one of their objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

Prediction = dict[str, Any]


class Shape(Enum):
    RECORDS = "records"
    FRAME = "frame"
    ARRAY = "array"


def _is_frame(rows: object) -> bool:
    return type(rows).__module__.startswith("pandas") and hasattr(rows, "to_dict")


def _is_array(rows: object) -> bool:
    return type(rows).__module__ == "numpy" and hasattr(rows, "ndim")


def _json_value(value: Any) -> Any:
    # NaN is no JSON: a missing value is null (the server then says which field is missing).
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def instances(rows: object) -> tuple[list[Any], Shape]:
    """The JSON ``instances`` for ``rows``, and which shape to answer in."""
    if _is_frame(rows):
        records = rows.to_dict(orient="records")  # type: ignore[attr-defined]
        return [{str(k): _json_value(v) for k, v in r.items()} for r in records], Shape.FRAME
    if _is_array(rows):
        if rows.ndim != 2:  # type: ignore[attr-defined]
            raise ValueError(f"a numpy array of rows must be 2-D, not {rows.ndim}-D")  # type: ignore[attr-defined]
        return [[_json_value(v) for v in row] for row in rows.tolist()], Shape.ARRAY  # type: ignore[attr-defined]
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        raise TypeError("rows must be a list of dicts (or of lists), a pandas DataFrame or a 2-D numpy array")
    return list(rows), Shape.RECORDS


def frame_csv(rows: object) -> bytes | None:
    """A DataFrame as CSV with its header row and without its index; None for anything else."""
    if not _is_frame(rows):
        return None
    return str(rows.to_csv(index=False)).encode()  # type: ignore[attr-defined]


def dumps(payload: object) -> bytes:
    """JSON for a request body; numpy scalars become plain numbers."""
    return json.dumps(payload, default=_plain, allow_nan=False, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def flat(prediction: Prediction) -> dict[str, Any]:
    """One prediction as table columns: ``{"label": 1, "probabilities": {"0": .2, "1": .8}}`` ->
    ``label``, ``probability_0``, ``probability_1``."""
    out: dict[str, Any] = {}
    for key, value in prediction.items():
        if isinstance(value, dict):
            prefix = "probability" if key == "probabilities" else key
            out.update({f"{prefix}_{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def outcome(prediction: Prediction) -> Any:
    """The one value a prediction is: the label of a classifier, the value of a regressor."""
    for key in ("label", "value", "prediction"):
        if key in prediction:
            return prediction[key]
    return next(iter(prediction.values()), None)


def answer(predictions: list[Prediction], shape: Shape, rows: object) -> Any:
    """The predictions in the shape the rows came in."""
    if shape is Shape.FRAME:
        import pandas as pd

        return pd.DataFrame([flat(p) for p in predictions], index=rows.index)  # type: ignore[attr-defined]
    if shape is Shape.ARRAY:
        import numpy as np

        return np.asarray([outcome(p) for p in predictions])
    return predictions
