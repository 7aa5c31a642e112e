"""Request bodies. Batch rows are generated from a seed so every run sends the same bytes,
and the in-process measurement predicts exactly the rows the gateway is sent."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import numpy as np

FEATURES = ("preg", "plas", "pres", "skin", "test", "mass", "pedi", "age")
EXAMPLE_ROW = (6.0, 148.0, 72.0, 35.0, 0.0, 33.6, 0.627, 50.0)
# Roughly the ranges of the Pima columns, so batch rows look like real patients.
_RANGES = ((0, 17), (44, 199), (24, 122), (7, 99), (14, 846), (18.2, 67.1), (0.078, 2.42), (21, 81))
_INTEGER = {"preg", "plas", "pres", "skin", "test", "age"}


def rows(count: int, seed: int = 6) -> list[tuple[float, ...]]:
    if count == 1:
        return [EXAMPLE_ROW]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        row = []
        for name, (low, high) in zip(FEATURES, _RANGES, strict=True):
            value = rng.uniform(low, high)
            row.append(float(round(value)) if name in _INTEGER else round(value, 3))
        out.append(tuple(row))
    return out


def matrix(count: int) -> np.ndarray:
    return np.array(rows(count), dtype=np.float64)


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def v1_records(instances: Sequence[Mapping[str, object]]) -> bytes:
    """A V1 predict body: ``{"instances": [...]}``, records keyed by feature name."""
    return _compact({"instances": instances})


def v1_predict(count: int = 1) -> bytes:
    return v1_records([dict(zip(FEATURES, row, strict=True)) for row in rows(count)])


def v2_infer(input_name: str = "input-0") -> bytes:
    """Open Inference Protocol: one FP64 tensor of shape [1, 8], row-major."""
    return _compact(
        {"inputs": [{"name": input_name, "shape": [1, len(FEATURES)], "datatype": "FP64", "data": list(EXAMPLE_ROW)}]}
    )


def v2_infer_binary(count: int, input_name: str = "input") -> tuple[bytes, int]:
    """The binary tensor extension (what tritonclient sends by default): a JSON header, then
    the raw little-endian FP64 rows; outputs asked back as binary too. Returns (body, header length)."""
    raw = matrix(count).astype("<f8").tobytes()
    header = _compact(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [count, len(FEATURES)],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + raw, len(header)


def login_form(username: str, password: str) -> bytes:
    return urlencode({"grant_type": "password", "username": username, "password": password}).encode()
