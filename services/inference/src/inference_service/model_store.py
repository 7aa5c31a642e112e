"""Models on disk, and the registry of the loaded ones.

Layout of ``model_dir`` (the source of truth every replica reads)::

    <name>/<version>/model.skops     the estimator, skops-serialised (never pickle)
    <name>/<version>/metadata.json   task, input schema, classes, sha256, trusted types, ...
    <name>/@<alias>                  a pointer file {"version": "..."}; ``@default`` is the default
    <name>/.access.json              who may call it: {"restricted": bool, "restricted_versions": [...]}
    <name>/.unloaded                 present while an operator has unloaded the model (V2 repository API)

A version folder and a pointer file each appear in one ``rename``: a version is built in a
``.staging-*`` folder first and a pointer written to a temporary file, both fsynced, so a reader
sees the whole thing or nothing. A model without ``@default`` (as ``train`` wrote them before
pointers existed) defaults to its newest version. Names that are not versions (``@...``,
``.staging-...``, ``.removing-...``, ``.access.json``) never match ``NAME_PATTERN``.

Models are stored with skops, never pickle: unpickling runs arbitrary code, while skops
only builds types on an allow-list. Every file is checked against the sha256 recorded in
its metadata *before* it is parsed, so a swapped or corrupted file is refused up front.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from modelgate_shared.scopes import MODEL_NAME_PATTERN, is_model_name, model_scope

from .fast_linear import ProbaFunction, compile_predict_proba
from .input_schema import InputSchema, SchemaError

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
NAME_PATTERN = MODEL_NAME_PATTERN
ALIAS_PREFIX = "@"
DEFAULT_ALIAS = "default"
ACCESS_FILE = ".access.json"
UNLOADED_MARKER = ".unloaded"
CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)

# Types trusted on top of skops' own defaults (which already cover scikit-learn estimators
# such as Pipeline, StandardScaler and LogisticRegression, and numpy arrays). A model that
# needs anything else is refused unless its metadata names the type in ``trusted_types``
# (what ``models add --trust TYPE`` records after an operator reviewed it).
EXTRA_TRUSTED_TYPES: frozenset[str] = frozenset()

# Final estimators whose ``predict`` is the most probable class of their ``predict_proba``:
# one pass over the model gives both. Any other classifier is asked for both.
ARGMAX_CLASSIFIERS = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    }
)


class ModelLoadError(RuntimeError):
    """A model folder that cannot be served; the message names the file."""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    version: str
    task: str
    schema: InputSchema
    classes: tuple[Any, ...]
    # A classifier with predict_proba: answers carry probabilities.
    probabilities: bool
    target: str
    metrics: Mapping[str, Any]
    model_sha256: str
    training_data: Mapping[str, Any]
    sklearn_version: str
    created_at: str
    # Types outside skops' defaults that an operator trusted for this file.
    trusted_types: tuple[str, ...]
    raw: Mapping[str, Any]

    @property
    def features(self) -> tuple[str, ...]:
        return self.schema.names

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> ModelMetadata:
        try:
            task = str(data["task"])
            if task not in TASKS:
                raise ModelLoadError(f"{source}: task {task!r} is not one of {', '.join(TASKS)}")
            trusted = data.get("trusted_types", [])
            if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
                raise ModelLoadError(f"{source}: trusted_types must be a list of type names")
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                task=task,
                schema=InputSchema.from_json(data["features"]),
                classes=tuple(data.get("classes", ())) if task == CLASSIFICATION else (),
                # Files from before the field existed were all classifiers with predict_proba.
                probabilities=bool(data.get("probabilities", task == CLASSIFICATION)),
                target=str(data.get("target", "")),
                metrics=dict(data.get("metrics", {})),
                model_sha256=str(data["model_sha256"]),
                training_data=dict(data.get("training_data", {})),
                sklearn_version=str(data.get("sklearn_version", "")),
                created_at=str(data.get("created_at", "")),
                trusted_types=tuple(trusted),
                raw=dict(data),
            )
        except SchemaError as exc:
            raise ModelLoadError(f"{source}: malformed field 'features': {exc}") from None
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
    # Fitted on a data frame (it has ``feature_names_in_``): it is given one, with the
    # schema's column names and types, not a bare matrix.
    wants_frame: bool = False
    # ``predict`` is the argmax of ``predict_proba`` (see ARGMAX_CLASSIFIERS).
    labels_from_proba: bool = True

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def schema(self) -> InputSchema:
        return self.metadata.schema

    @property
    def features(self) -> tuple[str, ...]:
        return self.metadata.schema.names

    @property
    def classes(self) -> tuple[Any, ...]:
        return self.metadata.classes

    @property
    def is_classifier(self) -> bool:
        return self.metadata.task == CLASSIFICATION


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: "10" after "9", "v2" after "v1"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", version))


def native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def final_estimator(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return final_estimator(steps[-1][1]) if isinstance(steps, list) and steps else estimator


def load_estimator(model_path: Path, trusted_types: Iterable[str]) -> Any:
    """skops-load a file, refusing any type outside skops' defaults and ``trusted_types``."""
    try:
        untrusted = set(sio.get_untrusted_types(file=model_path))
        refused = untrusted - EXTRA_TRUSTED_TYPES - set(trusted_types)
        if refused:
            raise ModelLoadError(f"{model_path}: contains types that are not trusted: {', '.join(sorted(refused))}")
        return sio.load(model_path, trusted=sorted(untrusted))
    except ModelLoadError:
        raise
    except Exception as exc:  # skops raises many types for a corrupt archive
        raise ModelLoadError(f"{model_path}: cannot load ({type(exc).__name__}: {exc})") from None


def load_model(folder: Path, *, name: str | None = None, version: str | None = None) -> LoadedModel:
    """Load and check one ``<name>/<version>`` folder (``name``/``version`` when the folder is
    still a staging folder, for a check before it is published)."""
    meta_path = folder / METADATA_FILE
    model_path = folder / MODEL_FILE
    try:
        raw = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{meta_path}: missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{meta_path}: expected a JSON object")
    metadata = ModelMetadata.from_json(raw, str(meta_path))
    expected = (name or folder.parent.name, version or folder.name)
    if (metadata.name, metadata.version) != expected:
        raise ModelLoadError(f"{meta_path}: says {metadata.name}/{metadata.version} but lives in {'/'.join(expected)}")
    if not model_path.is_file():
        raise ModelLoadError(f"{model_path}: missing")
    actual = sha256_file(model_path)
    if actual != metadata.model_sha256:
        raise ModelLoadError(
            f"{model_path}: sha256 {actual} does not match {metadata.model_sha256} in {METADATA_FILE}; refusing to load"
        )
    estimator = load_estimator(model_path, metadata.trusted_types)
    wants_frame = _check_estimator(estimator, metadata, model_path)
    fast = None
    if metadata.probabilities and metadata.schema.numeric and not wants_frame:
        fast = compile_predict_proba(estimator, len(metadata.features))
    return LoadedModel(
        metadata=metadata,
        estimator=estimator,
        path=folder,
        fast_proba=fast,
        wants_frame=wants_frame,
        labels_from_proba=type_name(final_estimator(estimator)) in ARGMAX_CLASSIFIERS,
    )


def _check_estimator(estimator: Any, metadata: ModelMetadata, model_path: Path) -> bool:
    """The estimator fits its metadata; returns whether it was fitted on a data frame."""
    if not hasattr(estimator, "predict"):
        raise ModelLoadError(f"{model_path}: {type(estimator).__name__} is not an estimator (no predict)")
    if metadata.probabilities and not hasattr(estimator, "predict_proba"):
        raise ModelLoadError(f"{model_path}: estimator {type(estimator).__name__} has no predict_proba")
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features != len(metadata.features):
        raise ModelLoadError(
            f"{model_path}: estimator expects {n_features} features, metadata lists {len(metadata.features)}"
        )
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and tuple(str(n) for n in names) != metadata.features:
        raise ModelLoadError(
            f"{model_path}: estimator was fitted on columns {list(names)}, metadata lists {list(metadata.features)}"
        )
    classes = tuple(native(c) for c in getattr(estimator, "classes_", ())) if metadata.task == CLASSIFICATION else ()
    if classes != metadata.classes:
        raise ModelLoadError(f"{model_path}: estimator classes {classes} differ from metadata {metadata.classes}")
    return names is not None


@dataclass(frozen=True, slots=True)
class ModelAccess:
    """Whether a model, or some of its versions, requires its own scope (``predict:<name>``):
    plain ``predict`` does not reach those."""

    restricted: bool = False
    restricted_versions: frozenset[str] = frozenset()

    def restricts(self, version: str) -> bool:
        return self.restricted or version in self.restricted_versions

    def to_json(self) -> dict[str, Any]:
        return {"restricted": self.restricted, "restricted_versions": sorted(self.restricted_versions)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> ModelAccess:
        if not isinstance(data, dict):
            raise ModelLoadError(f"{source}: expected a JSON object")
        restricted = data.get("restricted", False)
        versions = data.get("restricted_versions", [])
        if not isinstance(restricted, bool):
            raise ModelLoadError(f"{source}: 'restricted' must be true or false")
        if not isinstance(versions, list) or not all(isinstance(v, str) and is_model_name(v) for v in versions):
            raise ModelLoadError(f"{source}: 'restricted_versions' must be a list of version names")
        return cls(restricted, frozenset(versions))


class ModelRegistry:
    """Every model version, loaded once, and each model's aliases (``default`` among them).

    Immutable: a reload builds a new registry and swaps it in whole, so a request keeps the
    version it resolved even if the directory changes under it.
    """

    def __init__(
        self,
        models: Iterable[LoadedModel],
        aliases: Mapping[str, Mapping[str, str]] | None = None,
        access: Mapping[str, ModelAccess] | None = None,
    ) -> None:
        self._versions: dict[str, dict[str, LoadedModel]] = {}
        for model in models:
            self._versions.setdefault(model.name, {})[model.version] = model
        self._aliases = {name: dict((aliases or {}).get(name, {})) for name in self._versions}
        self._access = {name: (access or {}).get(name, ModelAccess()) for name in self._versions}
        self._default: dict[str, LoadedModel] = {}
        for name, versions in self._versions.items():
            pointed = self._aliases[name].get(DEFAULT_ALIAS)
            self._default[name] = (
                versions[pointed] if pointed in versions else versions[max(versions, key=version_sort_key)]
            )

    def __len__(self) -> int:
        return len(self._default)

    def names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, name: str) -> list[str]:
        return sorted(self._versions.get(name, {}), key=version_sort_key)

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version, ``default`` included (also when it is implicit: the newest)."""
        model = self._default.get(name)
        if model is None:
            return {}
        return {**self._aliases[name], DEFAULT_ALIAS: model.version}

    def get(self, name: str, version: str | None = None) -> LoadedModel | None:
        """The default version, a version, or (when no version has that name) an alias."""
        if version is None:
            return self._default.get(name)
        versions = self._versions.get(name, {})
        model = versions.get(version)
        if model is None and version in self._aliases.get(name, {}):
            model = versions.get(self._aliases[name][version])
        return model

    def default_version(self, name: str) -> str | None:
        model = self._default.get(name)
        return model.version if model else None

    def access(self, name: str) -> ModelAccess:
        return self._access.get(name, ModelAccess())

    def required_scope(self, model: LoadedModel) -> str | None:
        """``predict:<name>`` when this version requires its own scope, else None."""
        return model_scope(model.name) if self.access(model.name).restricts(model.version) else None

    def models(self, name: str | None = None) -> list[LoadedModel]:
        """Every loaded version of one model (in version order), or of every model."""
        names = self.names() if name is None else [name]
        return [self._versions[n][v] for n in names for v in self.versions(n)]


def model_folders(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        return []
    return sorted(
        version
        for name in model_dir.iterdir()
        if name.is_dir() and is_model_name(name.name)
        for version in name.iterdir()
        if version.is_dir() and is_model_name(version.name)
    )


def alias_name(file_name: str) -> str | None:
    """The alias a ``@<alias>`` file in a model folder stands for, or None for any other name."""
    if not file_name.startswith(ALIAS_PREFIX):
        return None
    alias = file_name[len(ALIAS_PREFIX) :]
    return alias if is_model_name(alias) else None


def parse_aliases(model_root: Path, pointers: Mapping[str, bytes]) -> dict[str, str]:
    """Pointer files' contents (alias -> bytes) as alias -> version; a malformed one, or one
    pointing at a version that does not exist, is a ModelLoadError."""
    aliases: dict[str, str] = {}
    for alias, raw in pointers.items():
        path = model_root / f"{ALIAS_PREFIX}{alias}"
        try:
            version = json.loads(raw).get("version")
        except (ValueError, AttributeError) as exc:
            raise ModelLoadError(f"{path}: unreadable alias ({exc})") from None
        if not isinstance(version, str) or not (model_root / version).is_dir():
            raise ModelLoadError(f"{path}: points at version {version!r}, which does not exist")
        aliases[alias] = version
    return aliases


def read_aliases(model_root: Path) -> dict[str, str]:
    """``<name>/@<alias>`` pointer files as alias -> version; a malformed one is a ModelLoadError."""
    pointers: dict[str, bytes] = {}
    for path in model_root.glob(ALIAS_PREFIX + "*"):
        alias = alias_name(path.name)
        if alias is None or not path.is_file():
            continue
        try:
            pointers[alias] = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"{path}: unreadable alias ({exc})") from None
    return parse_aliases(model_root, pointers)


def parse_access(model_root: Path, raw: bytes | None) -> ModelAccess:
    """The access file's contents (None: there is none, and the model is open to ``predict``)."""
    if raw is None:
        return ModelAccess()
    path = model_root / ACCESS_FILE
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from None
    return ModelAccess.from_json(data, str(path))


def read_access(model_root: Path) -> ModelAccess:
    path = model_root / ACCESS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ModelAccess()
    except OSError as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from None
    return parse_access(model_root, raw)


def no_models_error(model_dir: Path) -> ModelLoadError:
    return ModelLoadError(
        f"{model_dir}: no models found (expected <name>/<version>/{MODEL_FILE}); "
        "train one with `python -m inference_service.train` "
        "or add one with `python -m inference_service models add`"
    )


def load_registry(model_dir: Path) -> ModelRegistry:
    """Load every model under ``model_dir``, unloaded ones included; any bad one raises."""
    folders = model_folders(model_dir)
    if not folders:
        raise no_models_error(model_dir)
    models = [load_model(folder) for folder in folders]
    names = {m.name for m in models}
    aliases = {name: read_aliases(model_dir / name) for name in names}
    return ModelRegistry(models, aliases, {name: read_access(model_dir / name) for name in names})


def next_version(model_dir: Path, name: str) -> str:
    existing = [p.name for p in (model_dir / name).glob("*") if p.is_dir() and p.name.isdigit()]
    return str(max((int(v) for v in existing), default=0) + 1)


def check_name(label: str, value: str) -> None:
    if not is_model_name(value):
        raise ValueError(f"model {label} {value!r} must match {NAME_PATTERN.pattern}")


def write_file_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a crash after it must not undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(target: Path, data: bytes) -> None:
    """Write ``target`` whole or not at all: temporary file, fsync, rename, fsync the folder."""
    temporary = target.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        write_file_synced(temporary, data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(target.parent)


def write_alias(model_dir: Path, name: str, alias: str, version: str) -> Path:
    """Point ``<name>/@<alias>`` at ``version``."""
    check_name("alias", alias)
    root = model_dir / name
    if not (root / version).is_dir():
        raise ValueError(f"model {name!r} has no version {version!r}")
    target = root / f"{ALIAS_PREFIX}{alias}"
    replace_file(target, json.dumps({"version": version}).encode() + b"\n")
    return target


def remove_alias(model_dir: Path, name: str, alias: str) -> bool:
    """Remove ``<name>/@<alias>`` (not ``default``); False when there was none."""
    check_name("alias", alias)
    if alias == DEFAULT_ALIAS:
        raise ValueError("the default alias cannot be removed; point it at another version instead")
    try:
        (model_dir / name / f"{ALIAS_PREFIX}{alias}").unlink()
    except FileNotFoundError:
        return False
    fsync_dir(model_dir / name)
    return True


def write_access(model_dir: Path, name: str, access: ModelAccess) -> None:
    check_name("name", name)
    root = model_dir / name
    root.mkdir(exist_ok=True)
    replace_file(root / ACCESS_FILE, json.dumps(access.to_json()).encode() + b"\n")


def set_unloaded(model_dir: Path, name: str, unloaded: bool) -> None:
    """Mark a model unloaded (every replica stops serving it) or loaded again."""
    check_name("name", name)
    marker = model_dir / name / UNLOADED_MARKER
    if unloaded:
        replace_file(marker, b"")
    else:
        marker.unlink(missing_ok=True)
        fsync_dir(marker.parent)


def publish_version(
    model_dir: Path,
    metadata: Mapping[str, Any],
    write_model: Callable[[Path], None],
    *,
    make_default: bool = True,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Write a new version atomically: a reader sees a whole folder or none.

    ``write_model`` writes the skops file it is given; ``metadata`` gets ``model_file`` and
    ``model_sha256`` filled in; ``name`` and ``version`` pick the folder. ``check`` may
    refuse the staged folder (raise) before it becomes visible. With ``make_default`` the
    new version becomes the default; without, the current default is pinned first, so
    adding a newer version does not move it implicitly.
    """
    name, version = str(metadata["name"]), str(metadata["version"])
    check_name("name", name)
    check_name("version", version)
    root = model_dir / name
    target = root / version
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    new_model = not root.exists()
    staging = root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        write_model(staging / MODEL_FILE)
        with (staging / MODEL_FILE).open("rb") as fh:
            os.fsync(fh.fileno())
        complete = {**metadata, "model_file": MODEL_FILE, "model_sha256": sha256_file(staging / MODEL_FILE)}
        write_file_synced(staging / METADATA_FILE, json.dumps(complete, indent=2).encode() + b"\n")
        if check is not None:
            check(staging)
        if not make_default and not (root / f"{ALIAS_PREFIX}{DEFAULT_ALIAS}").exists():
            current = [p.name for p in root.iterdir() if p.is_dir() and is_model_name(p.name)]
            if current:
                write_alias(model_dir, name, DEFAULT_ALIAS, max(current, key=version_sort_key))
        # Renaming a folder onto an existing empty one would succeed: refuse that race too.
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        os.replace(staging, target)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if new_model:
            # A refused first version leaves no empty model folder behind (unless one raced in).
            with contextlib.suppress(OSError):
                root.rmdir()
        raise
    if make_default:
        write_alias(model_dir, name, DEFAULT_ALIAS, version)
    return target


def save_model(model_dir: Path, estimator: Any, metadata: dict[str, Any], *, make_default: bool = True) -> Path:
    """``publish_version`` for an estimator in memory (what ``train`` builds)."""
    return publish_version(model_dir, metadata, lambda path: sio.dump(estimator, path), make_default=make_default)


def remove_version(model_dir: Path, name: str, version: str) -> None:
    """Remove one version atomically (renamed out of sight, then deleted). The last version
    takes the model (and its aliases) with it; a version an alias points at while others
    remain is refused: move the alias first."""
    check_name("name", name)
    check_name("version", version)
    root = model_dir / name
    if not (root / version).is_dir():
        raise ValueError(f"model {name!r} has no version {version!r}")
    versions = [p.name for p in root.iterdir() if p.is_dir() and is_model_name(p.name)]
    if len(versions) == 1:
        doomed = model_dir / f".removing-{name}-{uuid.uuid4().hex}"
        os.replace(root, doomed)
        fsync_dir(model_dir)
    else:
        pointing = sorted(alias for alias, v in read_aliases(root).items() if v == version)
        if pointing:
            raise ValueError(
                f"version {version!r} of {name!r} is what {', '.join('@' + a for a in pointing)} points at; "
                "point it at another version first"
            )
        doomed = root / f".removing-{version}-{uuid.uuid4().hex}"
        os.replace(root / version, doomed)
        fsync_dir(root)
        access = read_access(root)
        if version in access.restricted_versions:
            # A version added later under the same name starts unrestricted, as any new one.
            write_access(model_dir, name, ModelAccess(access.restricted, access.restricted_versions - {version}))
    shutil.rmtree(doomed, ignore_errors=True)
