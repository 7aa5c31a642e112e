"""Find and load the served model file, the way the inference service stores it:
``<model_dir>/<name>/<version>/model.skops`` beside ``metadata.json``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skops.io as sio

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"


class ModelFileError(RuntimeError):
    """No usable model file; the message names the path."""


@dataclass(frozen=True)
class ModelFile:
    path: Path
    features: tuple[str, ...]
    classes: tuple[Any, ...]
    estimator: Any


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", version))


def newest_version(model_dir: Path, name: str) -> Path:
    folders = [p for p in (model_dir / name).glob("*") if (p / MODEL_FILE).is_file()]
    if not folders:
        raise ModelFileError(f"no {name}/<version>/{MODEL_FILE} under {model_dir}")
    return max(folders, key=lambda p: _version_key(p.name))


def load(model_dir: Path, name: str = "diabetes") -> ModelFile:
    folder = newest_version(model_dir, name)
    path = folder / MODEL_FILE
    metadata = json.loads((folder / METADATA_FILE).read_text())
    # Same rule as the service: only skops' default trusted types (scikit-learn, numpy).
    untrusted = sio.get_untrusted_types(file=path)
    if untrusted:
        raise ModelFileError(f"{path}: refusing untrusted types {untrusted}")
    estimator = sio.load(path, trusted=[])
    features = tuple(str(f["name"]) for f in metadata["features"])
    return ModelFile(path=path, features=features, classes=tuple(metadata["classes"]), estimator=estimator)
