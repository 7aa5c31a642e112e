"""Model files are checked before they are trusted; a bad one stops the start-up."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import skops.io as sio
from inference_service.app import create_app
from inference_service.model_store import (
    METADATA_FILE,
    MODEL_FILE,
    ModelLoadError,
    load_model,
    load_registry,
    save_model,
    version_sort_key,
    write_alias,
)
from inference_service.settings import InferenceSettings
from sklearn.preprocessing import FunctionTransformer


@pytest.fixture
def one_model(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of diabetes/1 to break in various ways."""
    root = tmp_path / "models"
    shutil.copytree(model_dir / "diabetes" / "1", root / "diabetes" / "1")
    return root


MINIMAL = {"name": "m", "version": "1", "task": "classification", "features": [{"name": "a"}], "classes": [0, 1]}


def folder(root: Path) -> Path:
    return root / "diabetes" / "1"


def edit_metadata(root: Path, **changes: object) -> None:
    path = folder(root) / METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


async def test_tampered_model_file_is_refused_at_start(
    one_model: Path, make_settings: Callable[..., InferenceSettings]
) -> None:
    model_file = folder(one_model) / MODEL_FILE
    with model_file.open("ab") as fh:
        fh.write(b"\0")
    app = create_app(make_settings(model_dir=one_model))
    with pytest.raises(ModelLoadError) as info:
        async with app.router.lifespan_context(app):
            pass
    assert str(model_file) in str(info.value)
    assert "does not match" in str(info.value)


def test_a_swapped_model_with_matching_hash_is_still_checked(one_model: Path) -> None:
    # Even with a consistent hash, a model must fit its metadata (features and classes).
    estimator = sio.load(folder(one_model) / MODEL_FILE)
    shutil.rmtree(folder(one_model))
    save_model(one_model, estimator, {"name": "diabetes", "version": "1", "task": "classification",
                                      "features": [{"name": "a", "dtype": "float64"}], "classes": [0, 1]})  # fmt: skip
    with pytest.raises(ModelLoadError, match="expects 8 features, metadata lists 1"):
        load_model(folder(one_model))


def test_untrusted_types_are_refused(tmp_path: Path) -> None:
    # A FunctionTransformer around an arbitrary callable is how code would sneak in; the
    # archive is refused before any object in it is built.
    target = save_model(tmp_path, FunctionTransformer(os.system), {**MINIMAL, "name": "evil"})
    with pytest.raises(ModelLoadError, match=r"not trusted: (posix|os)\.system"):
        load_model(target)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda root: (folder(root) / METADATA_FILE).unlink(), "metadata.json: missing"),
        (lambda root: (folder(root) / METADATA_FILE).write_text("{nope"), "unreadable"),
        (lambda root: (folder(root) / METADATA_FILE).write_text("[]"), "expected a JSON object"),
        (lambda root: (folder(root) / MODEL_FILE).unlink(), "model.skops: missing"),
        (lambda root: (folder(root) / MODEL_FILE).write_bytes(b"not a zip"), "does not match"),
        (lambda root: edit_metadata(root, version="3"), "says diabetes/3 but lives in diabetes/1"),
        (lambda root: edit_metadata(root, classes=["no", "yes"]), "classes"),
        (lambda root: edit_metadata(root, features=None), "malformed field"),
    ],
    ids=["no-metadata", "bad-json", "not-object", "no-model", "corrupt", "wrong-folder", "classes", "features"],
)
def test_broken_folders_name_the_file(one_model: Path, breakage: Callable[[Path], None], message: str) -> None:
    breakage(one_model)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_registry(one_model)
    assert str(folder(one_model)) in str(info.value)


def test_corrupt_archive_with_matching_hash(one_model: Path) -> None:
    model_file = folder(one_model) / MODEL_FILE
    model_file.write_bytes(b"not a zip at all")
    edit_metadata(one_model, model_sha256=hashlib.sha256(b"not a zip at all").hexdigest())
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(folder(one_model))


def test_empty_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no models found.*inference_service\.train"):
        load_registry(tmp_path / "nothing-here")


def test_newest_version_is_the_default(model_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    for version in ("2", "10", "9"):
        target = root / "diabetes" / version
        shutil.copytree(model_dir / "diabetes" / "1", target)
        meta = json.loads((target / METADATA_FILE).read_text())
        (target / METADATA_FILE).write_text(json.dumps({**meta, "version": version}))
    registry = load_registry(root)
    assert registry.versions("diabetes") == ["2", "9", "10"]
    assert registry.get("diabetes").version == "10"
    assert registry.get("diabetes", "9").version == "9"
    assert registry.get("diabetes", "11") is None and registry.get("iris") is None


def test_version_sort_key_is_natural() -> None:
    assert sorted(["v10", "v9", "v1.2", "v1.10"], key=version_sort_key) == ["v1.2", "v1.10", "v9", "v10"]


def test_save_refuses_bad_names_and_overwrites(model_dir: Path, tmp_path: Path) -> None:
    estimator = sio.load(model_dir / "diabetes" / "1" / MODEL_FILE)
    with pytest.raises(ValueError, match="model name"):
        save_model(tmp_path, estimator, {"name": "../escape", "version": "1"})
    save_model(tmp_path, estimator, {"name": "m", "version": "1"})
    with pytest.raises(FileExistsError):
        save_model(tmp_path, estimator, {"name": "m", "version": "1"})
    # No staging folder left behind; the one version is the default.
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "@default"]


def test_the_default_pointer_wins_over_the_newest(model_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(model_dir / "diabetes", root / "diabetes")
    write_alias(root, "diabetes", "default", "1")
    write_alias(root, "diabetes", "staging", "2")
    registry = load_registry(root)
    assert registry.get("diabetes").version == "1"
    assert registry.get("diabetes", "staging").version == "2"
    assert registry.aliases("diabetes") == {"default": "1", "staging": "2"}
    assert not [p for p in (root / "diabetes").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_pointer_to_a_missing_version_names_the_file(model_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(model_dir / "diabetes", root / "diabetes")
    (root / "diabetes" / "@default").write_text('{"version": "7"}')
    with pytest.raises(ModelLoadError, match=r"@default: points at version '7', which does not exist"):
        load_registry(root)
    with pytest.raises(ValueError, match="no version '7'"):
        write_alias(root, "diabetes", "default", "7")
