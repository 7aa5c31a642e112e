"""Open Inference Protocol (KServe V2) request parsing and response building, pure functions.

Supports the JSON tensor form and the binary tensor data extension that standard clients
(``tritonclient``) use by default: a JSON header of ``Inference-Header-Content-Length`` bytes
followed by raw little-endian tensors.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .input_schema import BOOLEAN, INTEGER, NUMBER, STRING, Column
from .json_body import InvalidJson, parse_json
from .model_store import LoadedModel
from .prediction import Predictions
from .typed_input import check_integers, tensors_frame
from .validation import InputError, Problem, TooManyRows, check_finite, describe_value

MATRIX_INPUT = "input"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
VALUE_OUTPUT = "value"
OUTPUTS = (LABEL_OUTPUT, PROBABILITIES_OUTPUT)
BOOL, BYTES = "BOOL", "BYTES"
# The tensor datatype a client sends for each column type (any numeric one works for numbers).
COLUMN_DATATYPES = {NUMBER: "FP64", INTEGER: "INT64", BOOLEAN: BOOL, STRING: BYTES}

# V2 numeric datatypes and their little-endian numpy layout. BOOL and BYTES (length-prefixed
# UTF-8 strings) are features only of models with boolean, category or string columns.
NUMERIC_DTYPES: dict[str, str] = {
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
    "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
}  # fmt: skip


# The protocol's shapes are int64; numpy's arrays have at most 32 dimensions (64 in numpy 2).
INT64_MAX = 2**63 - 1
MAX_DIMENSIONS = 32


def bad(message: str, *loc: str | int) -> InputError:
    return InputError([Problem(("body", *loc), message, "value_error")])


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    # A float matrix (all-numeric models) or a typed frame (``typed_input``).
    data: np.ndarray | pd.DataFrame
    outputs: tuple[str, ...]
    binary_outputs: frozenset[str]


def model_outputs(model: LoadedModel) -> tuple[str, ...]:
    if not model.is_classifier:
        return (VALUE_OUTPUT,)
    return OUTPUTS if model.metadata.probabilities else (LABEL_OUTPUT,)


def split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """The JSON part and the binary tail (empty without the binary extension)."""
    if header_length is None:
        return parse_json(body), b""
    # isascii: str.isdigit also takes "²", which int() refuses; more than 18 digits is past any body.
    valid = header_length.isascii() and header_length.isdigit() and len(header_length) <= 18
    if not valid or not 0 < int(header_length) <= len(body):
        raise InvalidJson(f"Inference-Header-Content-Length {header_length!r} does not fit a {len(body)}-byte body")
    size = int(header_length)
    return parse_json(body[:size]), body[size:]


def _shape(spec: Mapping[str, Any], name: str) -> tuple[int, ...]:
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= INT64_MAX for d in shape):
        raise bad(
            f"input {name!r}: shape must be a list of integers within 0..{INT64_MAX}, got {describe_value(shape)}"
        )
    if len(shape) > MAX_DIMENSIONS:
        raise bad(f"input {name!r}: shape has {len(shape)} dimensions, at most {MAX_DIMENSIONS} are supported")
    if math.prod(shape) > INT64_MAX:
        # Also keeps every count a message prints far below Python's int-to-text limit.
        raise bad(f"input {name!r}: shape {describe_value(shape)} has more than {INT64_MAX} elements")
    return tuple(shape)


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major flattening of nested lists (the spec allows flat or nested ``data``)."""
    if not isinstance(data, list):
        raise bad(f"input {name!r}: data must be a list, got {describe_value(data)}")
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _bytes_elements(raw: memoryview, count: int, name: str) -> list[Any]:
    """The binary form of a BYTES tensor: each element a little-endian uint32 length, then the bytes."""
    out: list[Any] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise bad(f"input {name!r}: BYTES data ends before its {count} elements")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise bad(f"input {name!r}: BYTES element of {size} bytes runs past its data")
        out.append(bytes(raw[offset : offset + size]))
        offset += size
    if offset != len(raw):
        raise bad(f"input {name!r}: {len(raw) - offset} bytes after its {count} BYTES elements")
    return out


def _typed_tensor(
    name: str, datatype: str, shape: tuple[int, ...], spec: Mapping[str, Any], raw: memoryview | None
) -> np.ndarray:
    """A BOOL or BYTES input as an array of Python values (``typed_input`` checks them)."""
    count = math.prod(shape)
    values: list[Any]
    if raw is not None:
        if datatype == BOOL:
            if len(raw) != count:
                raise bad(f"input {name!r}: binary_data_size {len(raw)} does not match shape {list(shape)} of BOOL")
            values = np.frombuffer(raw, dtype=np.uint8).astype(bool).tolist()
        else:
            values = _bytes_elements(raw, count, name)
    else:
        if "data" not in spec:
            raise bad(f"input {name!r}: no data (and no binary_data_size)")
        values = _flatten(spec["data"], name)
        if len(values) != count:
            raise bad(f"input {name!r}: {len(values)} values do not fill shape {list(shape)} ({count} values)")
    if datatype == BYTES:
        try:
            values = [v.decode() if isinstance(v, bytes) else v for v in values]
        except UnicodeDecodeError:
            raise bad(f"input {name!r}: BYTES elements must be UTF-8 text") from None
    out = np.empty(count, dtype=object)
    out[:] = values
    return out.reshape(shape)


def _tensor(spec: Any, binary: memoryview, offset: int, typed: bool) -> tuple[str, np.ndarray, int]:
    """One input as an array of its declared shape (float64 for numeric datatypes), and the
    new binary offset. BOOL and BYTES only when ``typed`` (a model with such columns)."""
    if not isinstance(spec, dict):
        raise bad("each input must be an object with name, shape, datatype and data", "inputs")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise bad("input without a name", "inputs")
    datatype = spec.get("datatype")
    accepted = [*NUMERIC_DTYPES, BOOL, BYTES] if typed else list(NUMERIC_DTYPES)
    if datatype not in accepted:
        raise bad(
            f"input {name!r}: datatype {describe_value(datatype)} is not supported; use one of {', '.join(accepted)}"
        )
    shape = _shape(spec, name)
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if datatype in (BOOL, BYTES):
        if binary_size is None:
            return name, _typed_tensor(name, datatype, shape, spec, None), offset
        if type(binary_size) is not int or binary_size < 0 or offset + binary_size > len(binary):
            raise bad(f"input {name!r}: binary_data_size {describe_value(binary_size)} does not fit the body")
        raw = binary[offset : offset + binary_size]
        return name, _typed_tensor(name, datatype, shape, spec, raw), offset + binary_size
    if binary_size is not None:
        dtype = np.dtype(NUMERIC_DTYPES[datatype])
        if type(binary_size) is not int or binary_size != count * dtype.itemsize:
            raise bad(
                f"input {name!r}: binary_data_size {binary_size!r} does not match shape {list(shape)} of {datatype}"
            )
        if offset + binary_size > len(binary):
            raise bad(f"input {name!r}: body ends before its {binary_size} bytes of binary data")
        values = np.frombuffer(binary[offset : offset + binary_size], dtype=dtype).astype(np.float64)
        return name, values.reshape(shape), offset + binary_size
    if "data" not in spec:
        raise bad(f"input {name!r}: no data (and no binary_data_size)")
    flat = _flatten(spec["data"], name)
    if len(flat) != count:
        raise bad(f"input {name!r}: {len(flat)} values do not fill shape {list(shape)} ({count} values)")
    for index, value in enumerate(flat):
        if type(value) is not int and type(value) is not float:
            raise bad(f"input {name!r}: element {index} must be a number, got {describe_value(value)}")
    try:
        values = np.asarray(flat, dtype=np.float64)
    except OverflowError:
        raise bad(f"input {name!r}: a value is too large for {datatype}") from None
    return name, values.reshape(shape), offset


def _matrix(tensors: dict[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """Either one [rows, features] tensor, or one [rows] / [rows, 1] tensor per feature."""
    if len(tensors) == 1 and next(iter(tensors)) not in features:
        name, tensor = next(iter(tensors.items()))
        if tensor.ndim != 2 or tensor.shape[1] != len(features):
            raise bad(
                f"input {name!r}: shape {list(tensor.shape)} must be [rows, {len(features)}] "
                f"(features {', '.join(features)})"
            )
        matrix = tensor
    else:
        missing = [f for f in features if f not in tensors]
        unknown = [n for n in tensors if n not in features]
        if missing or unknown:
            raise bad(
                f"inputs must be one [rows, {len(features)}] tensor or one tensor per feature; "
                f"missing {missing}, unknown {unknown}"
            )
        columns = []
        for name in features:
            tensor = tensors[name]
            if tensor.ndim == 2 and tensor.shape[1] == 1:
                tensor = tensor[:, 0]
            if tensor.ndim != 1:
                raise bad(f"input {name!r}: shape {list(tensors[name].shape)} must be [rows] or [rows, 1]")
            columns.append(tensor)
        if len({len(c) for c in columns}) != 1:
            raise bad(
                "per-feature inputs have different row counts: " + ", ".join(f"{n}={len(tensors[n])}" for n in features)
            )
        matrix = np.column_stack(columns)
    return matrix


def parse_infer_request(payload: Any, binary: bytes, model: LoadedModel, max_rows: int) -> InferRequest:
    """The request's tensors as the model's input: one float matrix (or one tensor per
    feature) for all-numeric models, one tensor per column otherwise, as MLServer's pandas
    codec sends a data frame (BYTES for strings)."""
    if not isinstance(payload, dict):
        raise bad("request must be a JSON object with an 'inputs' list")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("id must be a string", "id")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad("inputs must be a non-empty list of tensors", "inputs")
    schema = model.schema
    view = memoryview(binary)
    offset = 0
    tensors: dict[str, np.ndarray] = {}
    for spec in inputs:
        name, tensor, offset = _tensor(spec, view, offset, not schema.numeric)
        if name in tensors:
            raise bad(f"input {name!r} given twice", "inputs")
        tensors[name] = tensor
    if offset != len(view):
        raise bad(f"{len(view) - offset} bytes of binary data are not claimed by any input")
    rows = _row_count(tensors)
    if rows == 0:
        raise bad("no rows: the batch is empty", "inputs")
    if rows > max_rows:
        raise TooManyRows(rows, max_rows)
    data: np.ndarray | pd.DataFrame
    if schema.numeric:
        matrix = _matrix(tensors, model.features)
        check_finite(matrix, model.features, ("body", "inputs"), schema.nullable)
        if schema.has_integers:
            check_integers(
                schema, matrix, lambda row, col: (("body", "inputs", col, row), f"row {row}, feature {col!r}")
            )
        data = np.ascontiguousarray(matrix)
    else:
        data = tensors_frame(schema, tensors)
    outputs, binary_outputs = _requested_outputs(payload, model_outputs(model))
    return InferRequest(request_id, data, outputs, binary_outputs)


def _row_count(tensors: Mapping[str, np.ndarray]) -> int:
    """Rows are the first dimension (checked against the model's inputs later)."""
    first = next(iter(tensors.values()))
    return first.shape[0] if first.ndim else 1


def _requested_outputs(
    payload: Mapping[str, Any], available: tuple[str, ...]
) -> tuple[tuple[str, ...], frozenset[str]]:
    parameters = payload.get("parameters") or {}
    binary_default = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    requested = payload.get("outputs")
    if requested is None:
        return available, frozenset(available) if binary_default else frozenset()
    if not isinstance(requested, list):
        raise bad("outputs must be a list", "outputs")
    names: list[str] = []
    binary: set[str] = set()
    for spec in requested:
        name = spec.get("name") if isinstance(spec, dict) else None
        if name not in available:
            raise bad(f"unknown output {describe_value(name)}; outputs are {', '.join(available)}", "outputs")
        names.append(name)
        params = spec.get("parameters") or {}
        if params.get("binary_data", binary_default) if isinstance(params, dict) else binary_default:
            binary.add(name)
    return tuple(names), frozenset(binary)


def label_datatype(classes: Sequence[Any]) -> str:
    return "INT64" if all(type(c) is int for c in classes) else "BYTES"


def _label_bytes(labels: Sequence[Any], datatype: str) -> bytes:
    if datatype == "INT64":
        return np.asarray(labels, dtype="<i8").tobytes()
    parts = []
    for label in labels:
        raw = str(label).encode()
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def infer_response(model: LoadedModel, request: InferRequest, result: Predictions) -> tuple[dict[str, Any], bytes]:
    """The response JSON and, for outputs asked as binary, the raw tensors that follow it."""
    rows = result.rows
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": []}
    if request.id is not None:
        body["id"] = request.id
    tail: list[bytes] = []
    for name in request.outputs:
        if name == LABEL_OUTPUT:
            datatype = label_datatype(model.classes)
            output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [rows]}
            raw = _label_bytes(result.labels, datatype) if name in request.binary_outputs else None
            data: Any = result.labels if datatype == "INT64" else [str(x) for x in result.labels]
        elif name == VALUE_OUTPUT:
            assert result.values is not None
            values = np.ascontiguousarray(result.values, dtype="<f8")
            output = {"name": name, "datatype": "FP64", "shape": [rows]}
            raw = values.tobytes() if name in request.binary_outputs else None
            data = values
        else:
            assert result.probabilities is not None
            output = {"name": name, "datatype": "FP64", "shape": [rows, len(result.classes)]}
            probabilities = np.ascontiguousarray(result.probabilities, dtype="<f8")
            raw = probabilities.tobytes() if name in request.binary_outputs else None
            data = probabilities.ravel()
            output["parameters"] = {"classes": [str(c) for c in result.classes]}
        if raw is not None:
            output.setdefault("parameters", {})["binary_data_size"] = len(raw)
            tail.append(raw)
        else:
            output["data"] = data
        body["outputs"].append(output)
    return body, b"".join(tail)


def column_datatype(column: Column) -> str:
    return COLUMN_DATATYPES[column.value_type]


def model_metadata(model: LoadedModel, versions: Sequence[str]) -> dict[str, Any]:
    """All-numeric models take one ``[rows, features]`` tensor (one per feature also works);
    others one ``[rows, 1]`` tensor per column, each with its column's type and schema."""
    schema = model.schema
    inputs: list[dict[str, Any]]
    if schema.numeric:
        inputs = [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(model.features)]}]
    else:
        inputs = [
            {"name": c.name, "datatype": column_datatype(c), "shape": [-1, 1], "parameters": c.to_json()}
            for c in schema.columns
        ]
    outputs: list[dict[str, Any]] = []
    for name in model_outputs(model):
        if name == LABEL_OUTPUT:
            outputs.append({"name": name, "datatype": label_datatype(model.classes), "shape": [-1]})
        elif name == PROBABILITIES_OUTPUT:
            outputs.append({"name": name, "datatype": "FP64", "shape": [-1, len(model.classes)]})
        else:
            outputs.append({"name": name, "datatype": "FP64", "shape": [-1]})
    return {"name": model.name, "versions": list(versions), "platform": "sklearn", "inputs": inputs, "outputs": outputs}
