"""CSV: the one reader (numbered rows), uploads read into a float matrix or a typed frame, predictions written back."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd

from .input_schema import InputSchema
from .prediction import Predictions
from .typed_input import check_integers, csv_frame
from .validation import MAX_REPORTED_ERRORS, InputError, Problem, TooManyRows

LOC = ("body", "file")


class CsvRows:
    """The rows of a UTF-8 CSV (a byte-order mark is dropped), one pass, each with the line
    it ends on, counted as an editor shows them; ``line`` is where reading got to, for errors.

    Iterating raises ``csv.Error`` on syntax the reader refuses; ``strict`` also refuses stray
    quotes instead of reading them as text. A class rather than a generator: the rows come
    straight from C iterators, with no Python step per row (measured: a generator added
    ~0.5 ms per 10,000-row upload)."""

    __slots__ = ("_reader", "_rows")

    def __init__(self, data: bytes, *, strict: bool) -> None:
        self._reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), strict=strict)
        # zip takes each row before asking for the line number, so the number is the row's;
        # the numbers never run out, hence strict=False.
        self._rows = zip(self._reader, map(attrgetter("line_num"), repeat(self._reader)), strict=False)

    def __iter__(self) -> Iterator[tuple[list[str], int]]:
        return self._rows

    @property
    def line(self) -> int:
        return self._reader.line_num


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
    return None if math.isfinite(value) else f"{text[:40]!r} is not a finite number"


def read_rows(data: bytes, features: Sequence[str], max_rows: int) -> tuple[list[list[str]], list[int]]:
    """The cells of a CSV whose header names every feature (in any order), each row put in
    feature order, and the line each row is on. Line numbers in errors count the header as
    line 1, as an editor shows them."""
    try:
        # Strict: an upload with stray quotes is refused, not guessed at.
        numbered = CsvRows(data, strict=True)
    except UnicodeDecodeError as exc:
        raise _fail(LOC, f"file is not UTF-8 text (byte {exc.start})", "value_error.encoding") from None
    try:
        first, _ = next(iter(numbered), ([], 1))
        header = [h.strip() for h in first]
        if not any(header):
            raise _fail(LOC, "file is empty: expected a header row naming the features", "value_error.empty")
        _check_header(header, features)
        order = [header.index(f) for f in features]
        rows: list[list[str]] = []
        lines: list[int] = []
        for row, line in numbered:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise _fail(
                    (*LOC, line), f"line {line}: {len(row)} fields, expected {len(header)}", "value_error.shape"
                )
            if len(rows) >= max_rows:
                raise TooManyRows(len(rows) + 1, max_rows)
            rows.append([row[i] for i in order])
            lines.append(line)
    except csv.Error as exc:
        line = numbered.line
        raise _fail((*LOC, line), f"line {line}: malformed CSV ({exc})", "value_error.csv") from None
    if not rows:
        raise _fail(LOC, "file has a header but no data rows", "value_error.empty")
    return rows, lines


def parse_csv(data: bytes, features: Sequence[str], max_rows: int, schema: InputSchema | None = None) -> np.ndarray:
    """An all-numeric model's upload as a float64 matrix (``schema``: its integer columns
    must hold whole numbers)."""
    rows, lines = read_rows(data, features, max_rows)
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except ValueError:
        matrix = None
    if matrix is None or not np.isfinite(matrix).all():
        raise InputError(_cell_problems(rows, lines, features))
    if schema is not None and schema.has_integers:
        check_integers(
            schema, matrix, lambda row, name: ((*LOC, lines[row], name), f"line {lines[row]}, column {name!r}")
        )
    return matrix


def parse_typed_csv(data: bytes, schema: InputSchema, max_rows: int) -> tuple[pd.DataFrame, list[list[str]]]:
    """Any other model's upload as a frame of the schema's types, and the cells it came from."""
    rows, lines = read_rows(data, schema.names, max_rows)
    return csv_frame(schema, rows, lines, LOC), rows


def _some(names: list[str]) -> list[str]:
    """The first few names, each cut short: a message names what is wrong, not a whole hostile header."""
    shown = [name[:40] for name in names[:MAX_REPORTED_ERRORS]]
    return [*shown, "..."] if len(names) > MAX_REPORTED_ERRORS else shown


def _check_header(header: list[str], features: Sequence[str]) -> None:
    # Counter, not header.count per column: that is quadratic, and a hostile header has millions.
    duplicates = _some(sorted(h for h, n in Counter(header).items() if n > 1))
    missing = [f for f in features if f not in header]
    unknown = _some([h for h in header if h not in features])
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


def _cell_problems(rows: list[list[str]], lines: list[int], features: Sequence[str]) -> list[Problem]:
    """Every cell that is not a finite number, up to the reporting limit."""
    problems: list[Problem] = []
    for row, line in zip(rows, lines, strict=True):
        for name, cell in zip(features, row, strict=True):
            message = _cell_problem(cell)
            if message:
                problems.append(Problem((*LOC, line, name), f"line {line}, column {name!r}: {message}", "value_error"))
                if len(problems) >= MAX_REPORTED_ERRORS:
                    return problems
    return problems


def predictions_csv(features: Sequence[str], inputs: Sequence[Sequence[Any]], result: Predictions) -> str:
    """The input columns, then ``label`` and one probability column per class (a classifier),
    or ``value`` (a regressor)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if result.values is not None:
        writer.writerow([*features, "value"])
        writer.writerows([*row, value] for row, value in zip(inputs, result.values.tolist(), strict=True))
    elif result.probabilities is None:
        writer.writerow([*features, "label"])
        writer.writerows([*row, label] for row, label in zip(inputs, result.labels, strict=True))
    else:
        writer.writerow([*features, "label", *(f"probability_{c}" for c in result.classes)])
        for values, label, probs in zip(inputs, result.labels, result.probabilities.tolist(), strict=True):
            writer.writerow([*values, label, *probs])
    return out.getvalue()


def compact_rows(matrix: np.ndarray) -> list[list[int | float]]:
    """A float matrix's rows as the numbers a client sent (``3``, not ``3.0``)."""
    return [[_compact(v) for v in values] for values in matrix.tolist()]


def _compact(value: float) -> int | float:
    return int(value) if value.is_integer() else value
