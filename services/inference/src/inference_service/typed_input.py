"""Client values (JSON records, CSV cells, V2 tensors) into the data frame a pipeline expects.

Pure functions. Every value is checked against its column's type before the model sees it,
and every problem names the row and the column, so bad input is a 422 (or a V2 400) with a
precise message, never a 500. All-numeric models do not come here: ``validation`` and
``csv_io`` read them straight into a float matrix (see ``numeric_frame`` for the rest).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .input_schema import BOOLEAN, INTEGER, NUMBER, UNKNOWN_ERROR, Column, InputSchema, is_missing
from .validation import (
    INSTANCES,
    MAX_REPORTED_ERRORS,
    InputError,
    Problem,
    ProblemCollector,
    check_instances,
    describe_value,
    instances_to_matrix,
)

# Where a value sits, for messages: (loc, "row 3, feature 'x'").
Locate = Callable[[int], tuple[tuple[str | int, ...], str]]

INT64_LIMIT = 2**63
EXACT_FLOAT_INTEGERS = 2**53
TRUE_TEXT = frozenset({"true", "1"})
FALSE_TEXT = frozenset({"false", "0"})
SHOWN_CATEGORIES = 10


def _is_number(value: Any) -> bool:
    # bool is an int subclass; true/false is never a number here.
    return type(value) is int or type(value) is float


def _shown(categories: Sequence[Any]) -> str:
    text = ", ".join(repr(c) for c in categories[:SHOWN_CATEGORIES])
    return text + (", ..." if len(categories) > SHOWN_CATEGORIES else "")


def _value_problem(column: Column, value: Any) -> str | None:
    """Why ``value`` (a JSON-like value, not missing) does not fit ``column``, or None."""
    kind = column.value_type
    if kind in (NUMBER, INTEGER):
        if not _is_number(value):
            return f"must be a number, got {type(value).__name__} {describe_value(value)}"
        try:
            as_float = float(value)
        except OverflowError:
            return "number is too large"
        if not math.isfinite(as_float):
            return f"must be a finite number, got {value!r}"
        if kind == INTEGER and (not as_float.is_integer() or abs(as_float) >= INT64_LIMIT):
            return f"must be an integer, got {describe_value(value)}"
    elif kind == BOOLEAN:
        if type(value) is not bool:
            return f"must be true or false, got {type(value).__name__} {describe_value(value)}"
    elif type(value) is not str:
        return f"must be a string, got {type(value).__name__} {describe_value(value)}"
    if column.unknown_categories == UNKNOWN_ERROR and column.categories and value not in column.category_set:
        return f"unknown category {describe_value(value)} (the model knows {_shown(column.categories)})"
    return None


def _array(column: Column, values: list[Any]) -> np.ndarray:
    """The checked values as the array pandas and scikit-learn expect for this type."""
    kind = column.value_type
    missing = any(map(is_missing, values))
    if kind == INTEGER and not missing:
        return np.array([int(v) for v in values], dtype=np.int64)
    if kind in (NUMBER, INTEGER):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if kind == BOOLEAN and not missing:
        return np.array(values, dtype=bool)
    out = np.empty(len(values), dtype=object)
    out[:] = [np.nan if v is None else v for v in values]
    return out


_NUMBERS = frozenset({int, float})
_NUMBERS_OR_NULL = frozenset({int, float, type(None)})


def _plain_array(column: Column, values: list[Any]) -> np.ndarray | None:
    """The column's array when every value plainly fits, checked with whole-column operations
    (type sets, numpy); None when any might not, and the per-value checks then name each
    problem. Gives exactly what ``_array`` gives for the same values."""
    types = set(map(type, values))
    kind = column.value_type
    if kind in (NUMBER, INTEGER):
        if not types <= (_NUMBERS_OR_NULL if column.nullable else _NUMBERS):
            return None
        if kind == INTEGER and types == {int}:
            try:
                array = np.array(values, dtype=np.int64)
            except OverflowError:
                return None
            return array if _known_categories(column, values, missing=False) else None
        try:
            array = np.array(values, dtype=np.float64)  # None becomes NaN
        except (OverflowError, ValueError):
            return None
        missing = np.isnan(array)
        has_missing = bool(missing.any())
        if np.isinf(array).any() or (has_missing and not column.nullable):
            return None
        if kind == INTEGER:
            present = array[~missing]
            # Past 2**53 a float is not the integer the client sent: int() per value keeps it.
            limit = EXACT_FLOAT_INTEGERS if int in types else INT64_LIMIT
            if (present != np.floor(present)).any() or (np.abs(present) >= limit).any():
                return None
            if not has_missing:
                array = array.astype(np.int64)
        return array if _known_categories(column, values, missing=has_missing) else None
    if kind == BOOLEAN:
        return (
            np.array(values, dtype=bool)
            if types == {bool} and _known_categories(column, values, missing=False)
            else None
        )
    if types != {str} or not _known_categories(column, values, missing=False):
        return None
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _known_categories(column: Column, values: list[Any], missing: bool) -> bool:
    if column.unknown_categories != UNKNOWN_ERROR or not column.categories:
        return True
    # With missing values the per-value checks decide (they skip the missing ones).
    return not missing and column.category_set.issuperset(values)


def convert_column(column: Column, values: list[Any], locate: Locate, errors: ProblemCollector) -> np.ndarray:
    """One column of JSON-like values, checked; problems go to ``errors`` (and then the
    array is a placeholder: the caller raises them before using it)."""
    plain = _plain_array(column, values)
    if plain is not None:
        return plain
    reported = len(errors.problems)
    unparsed = False
    for row, value in enumerate(values):
        if type(value) is BadCell:
            unparsed = True  # already reported
            continue
        if is_missing(value):
            if not column.nullable:
                loc, where = locate(row)
                errors.add(
                    loc, f"{where}: a value is required (the model cannot take missing values)", "value_error.missing"
                )
            continue
        problem = _value_problem(column, value)
        if problem:
            loc, where = locate(row)
            errors.add(loc, f"{where}: {problem}", "value_error.type")
    if unparsed or len(errors.problems) > reported:
        return np.empty(0)
    return _array(column, values)


def build_frame(
    schema: InputSchema, columns: list[list[Any]], locators: Sequence[Locate], errors: ProblemCollector | None = None
) -> pd.DataFrame:
    errors = errors or ProblemCollector()
    arrays = {
        column.name: convert_column(column, values, locate, errors)
        for column, values, locate in zip(schema.columns, columns, locators, strict=True)
    }
    errors.raise_if_any()
    return pd.DataFrame(arrays, copy=False)


# --- V1 JSON records ------------------------------------------------------------------------


def records_input(schema: InputSchema, instances: Any, max_rows: int) -> np.ndarray | pd.DataFrame:
    """A float matrix for all-numeric models (the fast readers), else a typed frame."""
    if schema.matrix_ready:
        matrix = instances_to_matrix(instances, schema.names, max_rows)
        if schema.has_integers:
            check_integers(schema, matrix, json_cell)
        return matrix
    return records_frame(instances, schema, max_rows)


def json_cell(row: int, name: str) -> tuple[tuple[str | int, ...], str]:
    return ("body", "instances", row, name), f"row {row}, feature {name!r}"


def records_frame(instances: Any, schema: InputSchema, max_rows: int) -> pd.DataFrame:
    """``{"instances": [...]}`` rows (records by feature name, or positional lists)."""
    instances = check_instances(instances, max_rows)
    names = schema.names
    name_set = frozenset(names)
    width = len(names)
    errors = ProblemCollector()
    rows: list[Sequence[Any]] = []
    for index, row in enumerate(instances):
        loc = (*INSTANCES, index)
        if isinstance(row, dict):
            if row.keys() != name_set:
                for name in (f for f in names if f not in row):
                    errors.add((*loc, name), f"row {index}: missing feature {name!r}", "value_error.missing")
                for key in (k for k in row if k not in name_set):
                    errors.add(
                        (*loc, str(key)),
                        f"row {index}: unknown feature {describe_value(key)} (expected {', '.join(names)})",
                        "value_error.unknown_feature",
                    )
                continue
            rows.append([row[n] for n in names])
        elif isinstance(row, list) and len(row) == width:
            rows.append(row)
        else:
            errors.add(
                loc,
                f"row {index}: must be an object keyed by feature name or a list of {width} values "
                f"({', '.join(names)})",
                "type_error.row",
            )
    errors.raise_if_any()
    columns = [list(c) for c in zip(*rows, strict=True)]

    def locator(name: str) -> Locate:
        return lambda row: json_cell(row, name)

    return build_frame(schema, columns, [locator(n) for n in names])


# --- CSV cells ------------------------------------------------------------------------------


class BadCell(str):
    """A cell that failed to parse, holding why; reported once, then skipped by the checks."""


def cell_value(column: Column, cell: str) -> Any:
    """The JSON-like value a CSV cell stands for (an empty cell is missing, as pandas reads it)."""
    if not cell.strip():
        return None
    kind = column.value_type
    if kind in (NUMBER, INTEGER):
        try:
            value = float(cell)
        except ValueError:
            return BadCell(f"{cell.strip()[:40]!r} is not a number")
        return None if math.isnan(value) else value
    if kind == BOOLEAN:
        text = cell.strip().lower()
        if text in TRUE_TEXT:
            return True
        if text in FALSE_TEXT:
            return False
        return BadCell(f"{cell.strip()[:40]!r} is not true or false")
    return cell


def csv_frame(schema: InputSchema, rows: list[list[str]], lines: list[int], loc: tuple[str | int, ...]) -> pd.DataFrame:
    """Rows of cells already put in schema order by ``csv_io``."""
    errors = ProblemCollector()
    columns: list[list[Any]] = []
    for index, column in enumerate(schema.columns):
        values = []
        for row, line in zip(rows, lines, strict=True):
            value = cell_value(column, row[index])
            if type(value) is BadCell:
                errors.add((*loc, line, column.name), f"line {line}, column {column.name!r}: {value}", "value_error")
            values.append(value)
        columns.append(values)

    def locator(name: str) -> Locate:
        return lambda row: ((*loc, lines[row], name), f"line {lines[row]}, column {name!r}")

    return build_frame(schema, columns, [locator(c.name) for c in schema.columns], errors)


# --- V2 tensors -----------------------------------------------------------------------------


def tensors_frame(schema: InputSchema, tensors: dict[str, np.ndarray]) -> pd.DataFrame:
    """One ``[rows]`` or ``[rows, 1]`` tensor per column, as MLServer's pandas codec sends them."""
    names = schema.names
    missing = [n for n in names if n not in tensors]
    unknown = [n for n in tensors if n not in names]
    if missing or unknown:
        raise InputError(
            [
                Problem(
                    ("body", "inputs"),
                    f"inputs must be one tensor per feature ({', '.join(names)}); missing {missing}, unknown {unknown}",
                    "value_error",
                )
            ]
        )
    columns: list[list[Any]] = []
    for name in names:
        tensor = tensors[name]
        if tensor.ndim == 2 and tensor.shape[1] == 1:
            tensor = tensor[:, 0]
        if tensor.ndim != 1:
            raise InputError(
                [
                    Problem(
                        ("body", "inputs", name),
                        f"input {name!r}: shape {list(tensor.shape)} must be [rows] or [rows, 1]",
                        "value_error",
                    )
                ]
            )
        columns.append(tensor.tolist())
    if len({len(c) for c in columns}) != 1:
        counts = ", ".join(f"{n}={len(c)}" for n, c in zip(names, columns, strict=True))
        raise InputError(
            [Problem(("body", "inputs"), f"per-feature inputs have different row counts: {counts}", "value_error")]
        )

    def locator(name: str) -> Locate:
        return lambda row: (("body", "inputs", name, row), f"input {name!r}, row {row}")

    return build_frame(schema, columns, [locator(n) for n in names])


# --- all-numeric models ---------------------------------------------------------------------


def check_integers(
    schema: InputSchema, matrix: np.ndarray, locate: Callable[[int, str], tuple[tuple[str | int, ...], str]]
) -> None:
    """Integer columns of a float matrix must hold whole numbers."""
    errors = ProblemCollector()
    for index, column in enumerate(schema.columns):
        if column.dtype != INTEGER:
            continue
        values = matrix[:, index]
        bad = np.flatnonzero((values != np.floor(values)) | (np.abs(values) >= INT64_LIMIT))
        for row in bad[:MAX_REPORTED_ERRORS].tolist():
            loc, where = locate(row, column.name)
            errors.add(loc, f"{where}: must be an integer, got {values[row]!r}", "value_error.type")
    errors.raise_if_any()


def numeric_frame(schema: InputSchema, matrix: np.ndarray) -> pd.DataFrame:
    """A checked float matrix as the frame a pipeline fitted on a data frame expects."""
    return pd.DataFrame(
        {
            # A nullable integer column may hold NaN, which only a float column can.
            column.name: matrix[:, i].astype(np.int64)
            if column.dtype == INTEGER and not column.nullable
            else matrix[:, i]
            for i, column in enumerate(schema.columns)
        },
        copy=False,
    )
