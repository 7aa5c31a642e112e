"""Registering a fitted estimator someone brings: read it safely, derive what it takes and
answers, check it predicts, and publish it as a version (``model_store.publish_version``).

The schema comes from the estimator itself: its column names (``feature_names_in_``), the
categories its encoders were fitted on, and, when a sample CSV is given, the column types
pandas reads from it and whether each column may be missing (tried on the model, not guessed).
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from sklearn.utils import get_tags

from .csv_io import read_rows
from .input_schema import (
    BOOLEAN,
    CATEGORY,
    INTEGER,
    NUMBER,
    STRING,
    UNKNOWN_ERROR,
    UNKNOWN_IGNORE,
    Column,
    InputSchema,
)
from .model_store import (
    CLASSIFICATION,
    EXTRA_TRUSTED_TYPES,
    METADATA_FILE,
    REGRESSION,
    LoadedModel,
    ModelLoadError,
    check_name,
    load_model,
    native,
    next_version,
    publish_version,
    read_access,
    sha256_file,
    type_name,
    write_access,
    write_file_synced,
)
from .prediction import predict
from .typed_input import csv_frame
from .validation import InputError

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_WARNING = (
    "loading a pickle or joblib file runs whatever code it contains, with your rights: "
    "pass --trust-pickle only for a file you made yourself or fully trust"
)


class RegistrationError(ValueError):
    """The file cannot be registered; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ReadEstimator:
    estimator: Any
    skops_bytes: bytes
    source_format: str  # "skops" or "pickle"
    # Types skops needed beyond its defaults (all of them named with --trust).
    needed_types: tuple[str, ...]
    fitted_sklearn_version: str | None


def read_estimator(path: Path, *, trust: Sequence[str] = (), trust_pickle: bool = False) -> ReadEstimator:
    """A skops file, or (only with ``trust_pickle``) a pickle/joblib file converted to skops."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistrationError(f"cannot read {path}: {exc.strerror or exc}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        if data[:4] == ZIP_MAGIC:
            source_format = "skops"
            needed = _check_types(_untrusted_types(data, path), trust, path)
            try:
                estimator = sio.loads(data, trusted=list(needed))
            except Exception as exc:  # skops raises many types for a corrupt archive
                raise RegistrationError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc})") from None
        else:
            if not trust_pickle:
                raise RegistrationError(
                    f"{path} is not a skops file (save it with skops.io.dump). If it is a pickle or joblib "
                    f"file, --trust-pickle converts it to skops; but {PICKLE_WARNING}"
                )
            source_format = "pickle"
            try:
                estimator = joblib.load(path)
            except Exception as exc:  # a broken pickle raises anything
                raise RegistrationError(
                    f"{path}: not a readable pickle/joblib file ({type(exc).__name__}: {exc})"
                ) from None
            try:
                data = sio.dumps(estimator)
            except Exception as exc:
                raise RegistrationError(
                    f"{path}: skops cannot store this object ({type(exc).__name__}: {exc})"
                ) from None
            needed = _check_types(_untrusted_types(data, path), trust, path)
    fitted = None
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            fitted = str(warning.message.original_sklearn_version)
    return ReadEstimator(estimator, data, source_format, needed, fitted)


def _untrusted_types(data: bytes, path: Path) -> list[str]:
    try:
        return list(sio.get_untrusted_types(data=data))
    except Exception as exc:  # a truncated or corrupt archive
        raise RegistrationError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc})") from None


def _check_types(untrusted: list[str], trust: Sequence[str], path: Path) -> tuple[str, ...]:
    refused = sorted(set(untrusted) - set(trust) - EXTRA_TRUSTED_TYPES)
    if refused:
        raise RegistrationError(
            f"{path} needs types outside skops' trusted set: {', '.join(refused)}. Review them; "
            "if they are safe, name each with --trust TYPE (recorded in the model's metadata)"
        )
    return tuple(sorted(untrusted))


# --- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Encoded:
    categories: tuple[Any, ...]
    unknown: str
    missing_seen: bool


def _is_missing_category(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _encoders(estimator: Any, names: Sequence[str]) -> Iterator[tuple[str, _Encoded]]:
    """Each input column an encoder was fitted on, with its categories. Looks through
    Pipelines and ColumnTransformers (also nested), which is where encoders live."""
    if isinstance(estimator, Pipeline):
        # Only steps that keep the input columns as they are (an imputer) may come before the
        # encoder; any other step's output is no longer the input columns.
        imputed = False
        for _, step in estimator.steps:
            if step in (None, "passthrough"):
                continue
            if isinstance(step, SimpleImputer):
                imputed = True
                continue
            for column, encoded in _encoders(step, names):
                yield column, _Encoded(encoded.categories, encoded.unknown, encoded.missing_seen or imputed)
            return
        return
    if isinstance(estimator, ColumnTransformer):
        indices = getattr(estimator, "_transformer_to_input_indices", {})
        for name, transformer, _ in estimator.transformers_:
            columns = [names[i] for i in indices.get(name, [])]
            if columns and transformer not in ("drop", "passthrough"):
                yield from _encoders(transformer, columns)
        return
    if isinstance(estimator, OneHotEncoder | OrdinalEncoder):
        unknown = UNKNOWN_ERROR if estimator.handle_unknown == "error" else UNKNOWN_IGNORE
        for column, categories in zip(names, estimator.categories_, strict=False):
            values = [native(c) for c in categories.tolist()]
            kept = tuple(v for v in values if not _is_missing_category(v))
            yield column, _Encoded(kept, unknown, len(kept) != len(values))


def _allows_nan(estimator: Any) -> bool:
    """Whether every step takes missing values (scikit-learn's ``allow_nan`` tags); a guess
    on the safe side, used only when there is no sample to try it on."""
    if isinstance(estimator, Pipeline):
        return all(_allows_nan(step) for _, step in estimator.steps if step not in (None, "passthrough"))
    if isinstance(estimator, ColumnTransformer):
        return all(_allows_nan(t) for _, t, _ in estimator.transformers_ if t not in ("drop", "passthrough"))
    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # an estimator without tags
        return False


def _sample_dtype(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return BOOLEAN
    if pd.api.types.is_integer_dtype(series):
        return INTEGER
    if pd.api.types.is_numeric_dtype(series):
        return NUMBER
    return STRING


def feature_names(estimator: Any, sample: pd.DataFrame | None) -> tuple[str, ...]:
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise RegistrationError(f"{type(estimator).__name__} is not fitted (no n_features_in_)")
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        result = tuple(str(n) for n in names)
        if sample is not None:
            missing = [n for n in result if n not in sample.columns]
            if missing:
                raise RegistrationError(f"the sample lacks the model's columns {missing}")
        return result
    if sample is not None:
        if len(sample.columns) < n_features:
            raise RegistrationError(f"the model takes {n_features} columns, the sample has {len(sample.columns)}")
        return tuple(str(c) for c in sample.columns[:n_features])
    # Fitted on a bare array: scikit-learn's own names for such columns.
    return tuple(f"x{i}" for i in range(n_features))


def derive_schema(estimator: Any, sample: pd.DataFrame | None) -> InputSchema:
    """Column types from the sample (when given) and the encoders; nullability is settled
    later by trying the model (``settle_nullable``) when there is a sample."""
    names = feature_names(estimator, sample)
    encoded = dict(_encoders(estimator, names))
    nan_ok = _allows_nan(estimator)
    columns = []
    for name in names:
        seen = _sample_dtype(sample[name]) if sample is not None else NUMBER
        enc = encoded.get(name)
        if enc is None:
            columns.append(Column(name, seen, nullable=nan_ok))
        elif set(enc.categories) <= {False, True} and all(type(c) is bool for c in enc.categories):
            columns.append(Column(name, BOOLEAN, nullable=enc.missing_seen))
        else:
            columns.append(
                Column(
                    name, CATEGORY, categories=enc.categories, unknown_categories=enc.unknown, nullable=enc.missing_seen
                )
            )
    return InputSchema(tuple(columns))


def _predicts(model: LoadedModel, frame: pd.DataFrame | np.ndarray) -> bool:
    try:
        predict(model, frame)
    except (InputError, ValueError, TypeError):
        return False
    return True


def settle_nullable(model: LoadedModel, frame: pd.DataFrame) -> InputSchema:
    """Each column is nullable iff the model still predicts the sample's first row with that
    value missing."""
    columns = []
    for column in model.schema.columns:
        probe = frame.iloc[:1].copy()
        if probe[column.name].dtype.kind in "iub":
            probe[column.name] = probe[column.name].astype(object if column.value_type == BOOLEAN else np.float64)
        probe.loc[probe.index[0], column.name] = np.nan
        columns.append(
            Column(column.name, column.dtype, column.categories, column.unknown_categories, _predicts(model, probe))
        )
    return InputSchema(tuple(columns))


def sample_frame(model: LoadedModel, sample_csv: bytes, max_rows: int) -> pd.DataFrame | np.ndarray:
    """The sample read exactly as a CSV upload would be, for the test prediction."""
    rows, lines = read_rows(sample_csv, model.features, max_rows)
    frame = csv_frame(model.schema, rows, lines, ("sample",))
    if model.schema.matrix_ready and not model.wants_frame:
        return frame.to_numpy(dtype=np.float64)
    return frame


# --- putting it together ---------------------------------------------------------------------


def task_of(estimator: Any) -> tuple[str, tuple[Any, ...], bool]:
    """(task, classes, has predict_proba)."""
    if is_classifier(estimator) or (hasattr(estimator, "classes_") and not is_regressor(estimator)):
        classes = np.asarray(getattr(estimator, "classes_", []))
        if classes.ndim != 1 or len(classes) < 2:
            raise RegistrationError("only single-output classifiers with at least two classes are supported")
        return CLASSIFICATION, tuple(native(c) for c in classes.tolist()), hasattr(estimator, "predict_proba")
    if is_regressor(estimator):
        return REGRESSION, (), False
    raise RegistrationError(f"{type(estimator).__name__} is neither a classifier nor a regressor")


def add_model(
    model_dir: Path,
    file: Path,
    *,
    name: str,
    version: str | None = None,
    sample: Path | None = None,
    description: str = "",
    trust: Sequence[str] = (),
    trust_pickle: bool = False,
    make_default: bool = True,
    restricted: bool = False,
    max_sample_rows: int = 10_000,
) -> LoadedModel:
    """Register ``file`` as ``name``/``version``; returns the published version, loaded as
    the server will load it. Nothing is written unless every check passes. ``restricted``:
    the version requires the model's own scope, ``predict:<name>``, from its first moment."""
    try:
        check_name("name", name)
        if version is not None:
            check_name("version", version)
    except ValueError as exc:
        raise RegistrationError(str(exc)) from None
    read = read_estimator(file, trust=trust, trust_pickle=trust_pickle)
    estimator = read.estimator
    if not hasattr(estimator, "predict"):
        raise RegistrationError(f"{file}: {type(estimator).__name__} is not an estimator (no predict)")
    sample_bytes = sample_df = None
    if sample is not None:
        try:
            sample_bytes = sample.read_bytes()
            sample_df = pd.read_csv(sample, nrows=max_sample_rows)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise RegistrationError(f"cannot read the sample {sample}: {exc}") from None
        if sample_df.empty:
            raise RegistrationError(f"the sample {sample} has no rows")
    task, classes, probabilities = task_of(estimator)
    schema = derive_schema(estimator, sample_df)
    metadata: dict[str, Any] = {
        "name": name,
        "version": version or next_version(model_dir, name),
        "task": task,
        "format": "skops",
        "estimator": type_name(estimator),
        "description": description,
        "features": schema.to_json(),
        "target": "",
        "classes": list(classes),
        "probabilities": probabilities,
        "metrics": {},
        "source": {"file": file.name, "format": read.source_format, "sha256": sha256_file(file)},
        "sklearn_version": sklearn.__version__,
        "fitted_sklearn_version": read.fitted_sklearn_version or sklearn.__version__,
        "skops_version": skops.__version__,
        "skops_untrusted_types": list(read.needed_types),
        "trusted_types": list(read.needed_types),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }

    def check(staging: Path) -> None:
        # The staged folder loaded exactly as a server will, then asked for predictions.
        try:
            model = load_model(staging, name=name, version=str(metadata["version"]))
        except ModelLoadError as exc:
            raise RegistrationError(str(exc)) from None
        if sample_bytes is None:
            return
        try:
            frame = sample_frame(model, sample_bytes, max_sample_rows)
            predict(model, frame)
        except InputError as exc:
            raise RegistrationError(f"the model cannot predict the sample {sample}: {exc}") from None
        if isinstance(frame, pd.DataFrame):
            settled = settle_nullable(model, frame)
            if settled != model.schema:
                _rewrite_features(staging, settled)

    def write(path: Path) -> None:
        path.write_bytes(read.skops_bytes)

    if not restricted:
        published = publish_version(model_dir, metadata, write, make_default=make_default, check=check)
        return load_model(published)
    # The restriction is on disk before the version is, so no replica ever serves it open.
    root = model_dir / name
    existed = root.exists()
    before = read_access(root)
    write_access(
        model_dir, name, replace(before, restricted_versions=before.restricted_versions | {metadata["version"]})
    )
    try:
        published = publish_version(model_dir, metadata, write, make_default=make_default, check=check)
    except BaseException:
        if existed:
            write_access(model_dir, name, before)
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return load_model(published)


def register_upload(
    model_dir: Path,
    data: bytes,
    *,
    name: str,
    filename: str = "",
    version: str | None = None,
    sample: bytes | None = None,
    description: str = "",
    trust: Sequence[str] = (),
    make_default: bool = True,
    restricted: bool = False,
    max_sample_rows: int = 10_000,
    max_unpacked_bytes: int | None = None,
) -> LoadedModel:
    """``add_model`` for a file received over HTTP: skops only (a pickle is never loaded from
    the network), at most ``max_unpacked_bytes`` once unpacked (a skops file is a zip archive),
    and messages that name the upload, not temporary or server paths."""
    # The upload's own name (recorded in the metadata's source), reduced to safe characters.
    shown = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name)[:100].lstrip(".") or "upload.skops"
    if data[:4] != ZIP_MAGIC:
        raise RegistrationError(
            f"{shown} is not a skops file (save the estimator with skops.io.dump). A pickle or joblib "
            "file is never loaded from an upload: convert it on a trusted machine with "
            "`python -m inference_service models add FILE --trust-pickle`"
        )
    if max_unpacked_bytes is not None:
        _check_unpacked_size(data, shown, max_unpacked_bytes)
    with tempfile.TemporaryDirectory(prefix="modelgate-upload-") as folder:
        file = Path(folder) / shown
        file.write_bytes(data)
        sample_path = None
        if sample is not None:
            sample_path = Path(folder) / ".sample.csv"  # never the upload's name: that has no dot
            sample_path.write_bytes(sample)
        try:
            model = add_model(
                model_dir,
                file,
                name=name,
                version=version,
                sample=sample_path,
                description=description,
                trust=trust,
                make_default=make_default,
                restricted=restricted,
                max_sample_rows=max_sample_rows,
            )
        except RegistrationError as exc:
            message = str(exc).replace(str(file), shown).replace(str(sample_path), "the sample")
            raise RegistrationError(_without_paths(message, model_dir)) from None
    return model


def _check_unpacked_size(data: bytes, shown: str, limit: int) -> None:
    """Refuse a zip bomb before skops unpacks it. zipfile reads a member no further than the
    size its directory declares, so the declared sizes bound what loading can allocate."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise RegistrationError(f"{shown}: not a readable skops file (BadZipFile: {exc})") from None
    if unpacked > limit:
        raise RegistrationError(
            f"{shown} unpacks to {unpacked} bytes, more than the {limit} allowed "
            "(MODELGATE_INFERENCE_MAX_MODEL_UNPACKED_BYTES)"
        )


def _without_paths(message: str, model_dir: Path) -> str:
    """Server paths (the model directory, staging folders) are nobody's business over HTTP."""
    return re.sub(re.escape(str(model_dir)) + r"/[^ :]*", "the uploaded model", message)


def _rewrite_features(staging: Path, schema: InputSchema) -> None:
    path = staging / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["features"] = schema.to_json()
    write_file_synced(path, json.dumps(metadata, indent=2).encode() + b"\n")
