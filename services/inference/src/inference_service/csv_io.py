"""CSV batches: parsing an upload with a header row, and writing predictions back as CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np

from .prediction import Predictions
from .validation import MAX_REPORTED_ERRORS, InputError, Problem, TooManyRows

LOC = ("body", "file")


def _fail(loc: tuple[str | int, ...], msg: str, kind: str) -> InputError:
    return InputError([Problem(loc, msg, kind)])


def _cell_problem(cell: str) -> str | None:
    text = cell.strip()
    if not text:
        return "empty value"
    try:
        value = float(text)
    except ValueError:
        return f"{text[:40]!r} is not a number"
    return None if math.isfinite(value) else f"{text!r} is not a finite number"


def parse_csv(data: bytes, features: Sequence[str], max_rows: int) -> np.ndarray:
    """Rows of a CSV whose header names every feature (in any order), as a float64 matrix.
    Line numbers in errors count the header as line 1, as an editor shows them."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(LOC, f"file is not UTF-8 text (byte {exc.start})", "value_error.encoding") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            raise _fail(LOC, "file is empty: expected a header row naming the features", "value_error.empty")
        duplicates = sorted({h for h in header if header.count(h) > 1})
        missing = [f for f in features if f not in header]
        unknown = [h for h in header if h not in features]
        problems = []
        if duplicates:
            problems.append(Problem((*LOC, 1), f"line 1: duplicate columns {duplicates}", "value_error.header"))
        if missing:
            problems.append(Problem((*LOC, 1), f"line 1: missing feature columns {missing}", "value_error.missing"))
        if unknown:
            problems.append(
                Problem(
                    (*LOC, 1),
                    f"line 1: unknown columns {unknown} (expected {', '.join(features)})",
                    "value_error.unknown_feature",
                )
            )
        if problems:
            raise InputError(problems)
        order = [header.index(f) for f in features]
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise _fail(
                    (*LOC, reader.line_num),
                    f"line {reader.line_num}: {len(row)} fields, expected {len(header)}",
                    "value_error.shape",
                )
            if len(rows) >= max_rows:
                raise TooManyRows(len(rows) + 1, max_rows)
            rows.append([row[i] for i in order])
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise _fail(
            (*LOC, reader.line_num), f"line {reader.line_num}: malformed CSV ({exc})", "value_error.csv"
        ) from None
    if not rows:
        raise _fail(LOC, "file has a header but no data rows", "value_error.empty")
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except ValueError:
        matrix = None
    if matrix is not None and np.isfinite(matrix).all():
        return matrix
    problems: list[Problem] = []
    for row, line in zip(rows, lines, strict=True):
        for name, cell in zip(features, row, strict=True):
            message = _cell_problem(cell)
            if message:
                problems.append(Problem((*LOC, line, name), f"line {line}, column {name!r}: {message}", "value_error"))
                if len(problems) >= MAX_REPORTED_ERRORS:
                    raise InputError(problems)
    raise InputError(problems)


def predictions_csv(features: Sequence[str], matrix: np.ndarray, result: Predictions) -> str:
    """The input columns, then the label and one probability column per class."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*features, "label", *(f"probability_{c}" for c in result.classes)])
    for values, label, probs in zip(matrix.tolist(), result.labels, result.probabilities.tolist(), strict=True):
        writer.writerow([*(_compact(v) for v in values), label, *probs])
    return out.getvalue()


def _compact(value: float) -> int | float:
    return int(value) if value.is_integer() else value
