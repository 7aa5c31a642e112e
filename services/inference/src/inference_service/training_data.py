"""Getting a training CSV (path or URL), checking its hash, and reading it into arrays."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np

from .csv_io import CsvRows
from .model_store import sha256_file

PIMA_COLUMNS = ("preg", "plas", "pres", "skin", "test", "mass", "pedi", "age", "class")


class TrainingDataError(RuntimeError):
    """The training data cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    target: str


def is_url(source: str) -> bool:
    return urlparse(source).scheme in {"http", "https"}


def check_sha256(path: Path, expected: str | None, source: str) -> str:
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise TrainingDataError(
            f"training data {source} has sha256 {actual}, expected {expected.lower()} "
            "(set MODELGATE_TRAINING_DATA_SHA256 if the data changed on purpose)"
        )
    return actual


def download(url: str, cache_dir: Path, expected_sha256: str | None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``cache_dir`` once; a cached copy with the right hash is reused."""
    name = hashlib.sha256(url.encode()).hexdigest()[:16] + "-" + (Path(urlparse(url).path).name or "data.csv")
    target = cache_dir / name
    if target.is_file() and (not expected_sha256 or sha256_file(target) == expected_sha256.lower()):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as fh, httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                fh.write(chunk)
        check_sha256(Path(tmp_name), expected_sha256, url)
        os.replace(tmp_name, target)
    except httpx.HTTPError as exc:
        raise TrainingDataError(
            f"cannot download training data from {url}: {exc} "
            "(offline? set MODELGATE_TRAINING_DATA to a local copy of the CSV; with docker compose, "
            "set MODELGATE_TRAINING_DATA_FILE to that file on the host instead)"
        ) from None
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return target


def resolve(source: str, cache_dir: Path | None, expected_sha256: str | None) -> tuple[Path, str]:
    """A local path to the (verified) data, and its sha256."""
    if is_url(source):
        if cache_dir is None:
            cache_dir = Path(tempfile.gettempdir()) / "modelgate-data"
        path = download(source, cache_dir, expected_sha256)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise TrainingDataError(
                f"training data {source}: no such file (set MODELGATE_TRAINING_DATA; with docker compose, "
                "MODELGATE_TRAINING_DATA_FILE names the file on the host)"
            )
    return path, check_sha256(path, expected_sha256, source)


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _label(values: Sequence[str]) -> np.ndarray:
    """Integer labels when every value is an integer, else strings."""
    try:
        as_float = [float(v) for v in values]
        if all(f.is_integer() for f in as_float):
            return np.array([int(f) for f in as_float], dtype=np.int64)
    except ValueError:
        pass
    return np.array([v.strip() for v in values], dtype=object).astype(str)


def read_csv(path: Path, target: str, columns: Sequence[str] | None = None) -> Dataset:
    """A numeric CSV with a target column. Its header row names the columns when it has one
    (any non-numeric cell in the first row); otherwise ``columns`` does."""
    # Lenient, unlike uploads: the file is the operator's own, so a stray quote is read as text.
    rows = CsvRows(path.read_bytes(), strict=False)
    try:
        numbered = [(row, line) for row, line in rows if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise TrainingDataError(f"malformed CSV at line {rows.line}: {exc}") from None
    if not numbered:
        raise TrainingDataError(f"{path}: empty")
    first = numbered[0][0]
    if any(_parse_number(cell) is None for cell in first):
        header, body = [cell.strip() for cell in first], numbered[1:]
    elif columns:
        header, body = list(columns), numbered
    else:
        raise TrainingDataError(f"{path}: no header row; pass the column names with --columns")
    if len(set(header)) != len(header):
        raise TrainingDataError(f"{path}: duplicate column names in {header}")
    if target not in header:
        raise TrainingDataError(f"{path}: target column {target!r} not among {header}")
    if not body:
        raise TrainingDataError(f"{path}: no data rows")
    target_index = header.index(target)
    features = tuple(h for i, h in enumerate(header) if i != target_index)
    matrix: list[list[float]] = []
    labels: list[str] = []
    for row, line in body:
        if len(row) != len(header):
            raise TrainingDataError(f"{path} line {line}: {len(row)} fields, expected {len(header)}")
        values: list[float] = []
        for i, cell in enumerate(row):
            if i == target_index:
                labels.append(cell)
                continue
            number = _parse_number(cell)
            if number is None:
                raise TrainingDataError(f"{path} line {line}, column {header[i]!r}: {cell!r} is not a finite number")
            values.append(number)
        matrix.append(values)
    y = _label(labels)
    if len(np.unique(y)) < 2:
        raise TrainingDataError(f"{path}: target {target!r} has a single class; nothing to learn")
    return Dataset(X=np.asarray(matrix, dtype=np.float64), y=y, features=features, target=target)


def describe(source: str, sha256: str, rows: int, columns: Sequence[str]) -> dict[str, Any]:
    return {"source": source, "sha256": sha256, "rows": rows, "columns": list(columns)}
