"""``python -m inference_service.train``: build a model version from a CSV.

With no arguments it builds the default ``diabetes`` model from the Pima CSV named by
``MODELGATE_TRAINING_DATA`` (path or URL), checked against ``MODELGATE_TRAINING_DATA_SHA256``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
from modelgate_shared.scopes import is_model_name
from modelgate_shared.settings import load_settings
from modelgate_shared.training_data import DEFAULT_TRAINING_DATA, DEFAULT_TRAINING_DATA_SHA256
from pydantic import AliasChoices, Field
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .model_store import METADATA_FILE, NAME_PATTERN, model_folders, next_version, save_model
from .settings import ModelDirSettings
from .training_data import PIMA_COLUMNS, Dataset, TrainingDataError, describe, read_csv, resolve

TEST_SIZE = 0.33
RANDOM_STATE = 7


class TrainSettings(ModelDirSettings):
    """Training reads the launcher's shared variables, not only the service's own prefix."""

    data_cache_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("MODELGATE_INFERENCE_DATA_CACHE_DIR")
    )
    training_data: str = Field(default=DEFAULT_TRAINING_DATA, validation_alias=AliasChoices("MODELGATE_TRAINING_DATA"))
    training_data_sha256: str = Field(
        default=DEFAULT_TRAINING_DATA_SHA256,
        validation_alias=AliasChoices("MODELGATE_TRAINING_DATA_SHA256"),
        pattern=r"^([0-9a-fA-F]{64})?$",
    )


def build_pipeline() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])


def fit(dataset: Dataset) -> tuple[Pipeline, dict[str, Any]]:
    """The tutorial's recipe: a 67/33 split with seed 7, accuracy on the held-out third."""
    X_train, X_test, y_train, y_test = train_test_split(
        dataset.X, dataset.y, test_size=TEST_SIZE, random_state=RANDOM_STATE
    )
    pipeline = build_pipeline().fit(X_train, y_train)
    accuracy = float(pipeline.score(X_test, y_test))
    metrics = {
        "accuracy": round(accuracy, 6),
        "split": {"test_size": TEST_SIZE, "random_state": RANDOM_STATE},
        "train_rows": len(y_train),
        "test_rows": len(y_test),
    }
    return pipeline, metrics


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def train(
    *,
    model_dir: Path,
    source: str,
    expected_sha256: str | None,
    name: str = "diabetes",
    target: str = "class",
    columns: Sequence[str] | None = PIMA_COLUMNS,
    cache_dir: Path | None = None,
    version: str | None = None,
) -> Path:
    """Train and save one model version; returns its folder."""
    if not is_model_name(name):
        raise TrainingDataError(f"model name {name!r} must match {NAME_PATTERN.pattern}")
    path, sha256 = resolve(source, cache_dir, expected_sha256)
    dataset = read_csv(path, target, columns)
    pipeline, metrics = fit(dataset)
    metadata = {
        "name": name,
        "version": version or next_version(model_dir, name),
        "task": "classification",
        "format": "skops",
        "estimator": "Pipeline(StandardScaler, LogisticRegression)",
        "features": [{"name": f, "dtype": "number"} for f in dataset.features],
        "target": dataset.target,
        "classes": [_native(c) for c in pipeline.classes_],
        "probabilities": True,
        "metrics": metrics,
        "training_data": describe(source, sha256, len(dataset.y), [*dataset.features, dataset.target]),
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return save_model(model_dir, pipeline, metadata)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference_service.train", description=__doc__)
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the model already has a version")
    parser.add_argument("--name", default="diabetes", help="model name (default: diabetes)")
    parser.add_argument("--data", help="CSV path or URL (default: MODELGATE_TRAINING_DATA)")
    parser.add_argument(
        "--sha256",
        help="expected sha256 of --data (default: MODELGATE_TRAINING_DATA_SHA256 when --data is not given; "
        "with --data and no --sha256 the hash is recorded, not checked)",
    )
    parser.add_argument("--target", default="class", help="name of the label column (default: class)")
    parser.add_argument(
        "--columns",
        help="comma-separated column names, used when the CSV has no header row (default: the Pima columns)",
    )
    parser.add_argument("--version", help="version folder name (default: next integer)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(TrainSettings)
    if args.if_missing and any(p.parent.name == args.name for p in model_folders(settings.model_dir)):
        print(f"model {args.name!r} already exists in {settings.model_dir}; not training (--if-missing)")
        return 0
    if args.data:
        source, expected = args.data, args.sha256
    else:
        source, expected = settings.training_data, args.sha256 or settings.training_data_sha256
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else PIMA_COLUMNS
    try:
        folder = train(
            model_dir=settings.model_dir,
            source=source,
            expected_sha256=expected or None,
            name=args.name,
            target=args.target,
            columns=columns,
            cache_dir=settings.data_cache_dir,
            version=args.version,
        )
    except (TrainingDataError, OSError, ValueError) as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    accuracy = json.loads((folder / METADATA_FILE).read_text())["metrics"]["accuracy"]
    print(f"trained {args.name} version {folder.name} (held-out accuracy {accuracy:.3f}) -> {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
