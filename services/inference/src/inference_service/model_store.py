"""Models on disk: ``<model_dir>/<name>/<version>/model.skops`` plus ``metadata.json``.

Models are stored with skops, never pickle: unpickling runs arbitrary code, while skops
only builds types on an allow-list. Every file is checked against the sha256 recorded in
its metadata *before* it is parsed, so a swapped or corrupted file is refused up front.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from .fast_linear import ProbaFunction, compile_predict_proba

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Types trusted on top of skops' own defaults (which already cover scikit-learn estimators
# such as Pipeline, StandardScaler and LogisticRegression, and numpy arrays). A model that
# needs anything else is refused until the type is reviewed and added here.
EXTRA_TRUSTED_TYPES: frozenset[str] = frozenset()


class ModelLoadError(RuntimeError):
    """A model folder that cannot be served; the message names the file."""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    version: str
    task: str
    features: tuple[str, ...]
    classes: tuple[Any, ...]
    target: str
    metrics: Mapping[str, Any]
    model_sha256: str
    training_data: Mapping[str, Any]
    sklearn_version: str
    created_at: str
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> ModelMetadata:
        try:
            features = data["features"]
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                task=str(data["task"]),
                features=tuple(str(f["name"]) for f in features),
                classes=tuple(data["classes"]),
                target=str(data.get("target", "")),
                metrics=dict(data.get("metrics", {})),
                model_sha256=str(data["model_sha256"]),
                training_data=dict(data.get("training_data", {})),
                sklearn_version=str(data.get("sklearn_version", "")),
                created_at=str(data.get("created_at", "")),
                raw=dict(data),
            )
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"{source}: missing or malformed field {exc}") from None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    metadata: ModelMetadata
    estimator: Any
    path: Path
    # ``estimator.predict_proba`` without scikit-learn's per-call checks, when ``fast_linear``
    # knows the estimator; ``prediction.predict`` falls back to the estimator otherwise.
    fast_proba: ProbaFunction | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def features(self) -> tuple[str, ...]:
        return self.metadata.features

    @property
    def classes(self) -> tuple[Any, ...]:
        return self.metadata.classes


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: "10" after "9", "v2" after "v1"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", version))


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def load_model(folder: Path) -> LoadedModel:
    """Load and check one ``<name>/<version>`` folder."""
    meta_path = folder / METADATA_FILE
    model_path = folder / MODEL_FILE
    try:
        raw = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{meta_path}: missing") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{meta_path}: expected a JSON object")
    metadata = ModelMetadata.from_json(raw, str(meta_path))
    if (metadata.name, metadata.version) != (folder.parent.name, folder.name):
        raise ModelLoadError(
            f"{meta_path}: says {metadata.name}/{metadata.version} but lives in {folder.parent.name}/{folder.name}"
        )
    if not model_path.is_file():
        raise ModelLoadError(f"{model_path}: missing")
    actual = sha256_file(model_path)
    if actual != metadata.model_sha256:
        raise ModelLoadError(
            f"{model_path}: sha256 {actual} does not match {metadata.model_sha256} in {METADATA_FILE}; refusing to load"
        )
    try:
        untrusted = set(sio.get_untrusted_types(file=model_path))
        refused = untrusted - EXTRA_TRUSTED_TYPES
        if refused:
            raise ModelLoadError(f"{model_path}: contains types that are not trusted: {', '.join(sorted(refused))}")
        estimator = sio.load(model_path, trusted=sorted(untrusted))
    except ModelLoadError:
        raise
    except Exception as exc:  # skops raises many types for a corrupt archive
        raise ModelLoadError(f"{model_path}: cannot load ({type(exc).__name__}: {exc})") from None
    _check_estimator(estimator, metadata, model_path)
    fast = compile_predict_proba(estimator, len(metadata.features))
    return LoadedModel(metadata=metadata, estimator=estimator, path=folder, fast_proba=fast)


def _check_estimator(estimator: Any, metadata: ModelMetadata, model_path: Path) -> None:
    if not hasattr(estimator, "predict_proba"):
        raise ModelLoadError(f"{model_path}: estimator {type(estimator).__name__} has no predict_proba")
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features != len(metadata.features):
        raise ModelLoadError(
            f"{model_path}: estimator expects {n_features} features, metadata lists {len(metadata.features)}"
        )
    classes = tuple(_native(c) for c in getattr(estimator, "classes_", ()))
    if classes != metadata.classes:
        raise ModelLoadError(f"{model_path}: estimator classes {classes} differ from metadata {metadata.classes}")


class ModelRegistry:
    """Every model version, loaded once; the newest version of a name is its default."""

    def __init__(self, models: Iterable[LoadedModel]) -> None:
        self._versions: dict[str, dict[str, LoadedModel]] = {}
        for model in models:
            self._versions.setdefault(model.name, {})[model.version] = model
        self._default = {
            name: versions[max(versions, key=version_sort_key)] for name, versions in self._versions.items()
        }

    def __len__(self) -> int:
        return len(self._default)

    def names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, name: str) -> list[str]:
        return sorted(self._versions.get(name, {}), key=version_sort_key)

    def get(self, name: str, version: str | None = None) -> LoadedModel | None:
        if version is None:
            return self._default.get(name)
        return self._versions.get(name, {}).get(version)

    def default_version(self, name: str) -> str | None:
        model = self._default.get(name)
        return model.version if model else None


def model_folders(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        return []
    return sorted(
        version
        for name in model_dir.iterdir()
        if name.is_dir() and NAME_PATTERN.match(name.name)
        for version in name.iterdir()
        if version.is_dir() and NAME_PATTERN.match(version.name)
    )


def load_registry(model_dir: Path) -> ModelRegistry:
    """Load every model under ``model_dir``; any bad one stops the start-up."""
    folders = model_folders(model_dir)
    if not folders:
        raise ModelLoadError(
            f"{model_dir}: no models found (expected <name>/<version>/{MODEL_FILE}); "
            "train one with `python -m inference_service.train`"
        )
    return ModelRegistry(load_model(folder) for folder in folders)


def next_version(model_dir: Path, name: str) -> str:
    existing = [p.name for p in (model_dir / name).glob("*") if p.is_dir() and p.name.isdigit()]
    return str(max((int(v) for v in existing), default=0) + 1)


def save_model(model_dir: Path, estimator: Any, metadata: dict[str, Any]) -> Path:
    """Write a new version atomically: a reader sees a whole folder or none.

    ``metadata`` gets ``model_sha256`` filled in; ``name`` and ``version`` pick the folder.
    """
    name, version = str(metadata["name"]), str(metadata["version"])
    for label, value in (("name", name), ("version", version)):
        if not NAME_PATTERN.match(value):
            raise ValueError(f"model {label} {value!r} must match {NAME_PATTERN.pattern}")
    target = model_dir / name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    staging = model_dir / name / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        sio.dump(estimator, staging / MODEL_FILE)
        metadata = {**metadata, "model_file": MODEL_FILE, "model_sha256": sha256_file(staging / MODEL_FILE)}
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
