"""The model directory as this replica serves it: watched, reloaded on change, swapped whole.

Every replica polls the directory (``MODELGATE_INFERENCE_MODEL_POLL_SECONDS``); a change (a
version added or removed, an alias moved, access changed, a model unloaded) builds a new
immutable ``ModelRegistry`` and swaps it in with one assignment. A request keeps the
``LoadedModel`` it resolved, so requests in flight finish on the version they started with.

Versions already loaded are reused (a version folder never changes once published); only new
ones are read. A version that fails to load is reported (log, ``failures``, a metric, the
``/readyz`` detail) and never replaces a working one: an alias pointing at it keeps its previous
target while that is still loaded. At start, any failure stops the service, naming the file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelgate_shared.scopes import is_model_name

from .model_store import (
    ACCESS_FILE,
    ALIAS_PREFIX,
    METADATA_FILE,
    MODEL_FILE,
    UNLOADED_MARKER,
    LoadedModel,
    ModelAccess,
    ModelLoadError,
    ModelRegistry,
    alias_name,
    load_model,
    no_models_error,
    parse_access,
    parse_aliases,
)

log = logging.getLogger(__name__)

# What identifies a published version on disk: the folder's inode and its files' sizes and
# modification times. Published folders are immutable, so a change means a new folder.
VersionKey = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One ``<name>/`` folder as a scan saw it."""

    versions: Mapping[str, VersionKey]
    # The raw bytes of every pointer file and of the access file (None: none): compared, and
    # what the registry is built from when they changed.
    pointers: Mapping[str, bytes]
    access: bytes | None
    unloaded: bool


Snapshot = Mapping[str, ModelEntry]


@dataclass(frozen=True, slots=True)
class LoadFailure:
    name: str
    # A version, or ``@alias`` / the access file when that is what could not be read.
    version: str
    error: str


def _stat_key(*paths: Path) -> VersionKey:
    key: list[int] = []
    for path in paths:
        stat = path.stat()
        key += [stat.st_ino, stat.st_size, stat.st_mtime_ns]
    return tuple(key)


def _read_bytes(path: Path) -> bytes | None:
    """None when there is no such file; an unreadable one (a folder, no permission) reads as
    empty, which parsing then reports as malformed (and an access file fails closed)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return b""


def scan(model_dir: Path) -> dict[str, ModelEntry]:
    """Stat calls and a few small reads: cheap enough to run every second."""
    snapshot: dict[str, ModelEntry] = {}
    if not model_dir.is_dir():
        return snapshot
    for root in model_dir.iterdir():
        if not (is_model_name(root.name) and root.is_dir()):
            continue
        versions: dict[str, VersionKey] = {}
        pointers: dict[str, bytes] = {}
        try:
            for child in root.iterdir():
                alias = alias_name(child.name)
                if alias is not None:
                    # As read_aliases: only files are pointers.
                    if child.is_file() and (raw := _read_bytes(child)) is not None:
                        pointers[alias] = raw
                elif is_model_name(child.name) and child.is_dir():
                    try:
                        versions[child.name] = _stat_key(child, child / METADATA_FILE, child / MODEL_FILE)
                    except FileNotFoundError:
                        versions[child.name] = ()  # incomplete: load_model says what is missing
            entry = ModelEntry(versions, pointers, _read_bytes(root / ACCESS_FILE), (root / UNLOADED_MARKER).exists())
        except FileNotFoundError:
            continue  # removed while we looked: the next scan sees it gone
        if versions:
            snapshot[root.name] = entry
    return snapshot


class ModelRepository:
    """Holds the current registry; ``reload`` brings it up to date with the directory."""

    def __init__(self, model_dir: Path, on_failure: Callable[[LoadFailure], None] | None = None) -> None:
        self.model_dir = model_dir
        self.registry = ModelRegistry([])
        self.snapshot: Snapshot = {}
        self._loaded: dict[tuple[str, str], tuple[VersionKey, LoadedModel]] = {}
        self._failed: dict[tuple[str, str], tuple[VersionKey, LoadFailure]] = {}
        self._unloaded: frozenset[str] = frozenset()
        self._on_failure = on_failure
        self._lock = threading.Lock()

    @property
    def failures(self) -> list[LoadFailure]:
        return [failure for _, failure in sorted(self._failed.values(), key=lambda f: (f[1].name, f[1].version))]

    def unloaded(self) -> frozenset[str]:
        """Models an operator unloaded (on disk, not served)."""
        return self._unloaded

    def open(self) -> ModelRegistry:
        """The first load: any model that fails stops the start-up (raises ``ModelLoadError``)."""
        self.reload()
        if self._failed:
            first = self.failures[0]
            raise ModelLoadError(first.error)
        if not self.snapshot:
            raise no_models_error(self.model_dir)
        return self.registry

    def reload(self) -> bool:
        """Blocking (file reads, model parsing): run it in a thread. Returns whether the
        registry changed. Safe to call from several threads; one reload runs at a time."""
        with self._lock:
            snapshot = scan(self.model_dir)
            if snapshot == self.snapshot:
                return False
            aliases: dict[str, dict[str, str]] = {}
            access: dict[str, ModelAccess] = {}
            loaded: dict[tuple[str, str], tuple[VersionKey, LoadedModel]] = {}
            failed: dict[tuple[str, str], tuple[VersionKey, LoadFailure]] = {}
            for name, entry in sorted(snapshot.items()):
                if entry.unloaded:
                    continue
                versions: set[str] = set()
                for version, key in sorted(entry.versions.items()):
                    model = self._load(name, version, key, failed)
                    if model is not None:
                        loaded[(name, version)] = (key, model)
                        versions.add(version)
                if versions:
                    aliases[name] = self._aliases(name, entry, versions, failed)
                    access[name] = self._access(name, entry, failed)
            self._loaded, self._failed = loaded, failed
            self.registry = ModelRegistry((model for _, model in loaded.values()), aliases, access)
            self.snapshot = snapshot
            self._unloaded = frozenset(name for name, entry in snapshot.items() if entry.unloaded)
            return True

    def _load(
        self, name: str, version: str, key: VersionKey, failed: dict[tuple[str, str], tuple[VersionKey, LoadFailure]]
    ) -> LoadedModel | None:
        previous = self._loaded.get((name, version))
        if previous is not None and previous[0] == key:
            return previous[1]
        known = self._failed.get((name, version))
        if known is not None and known[0] == key:
            failed[(name, version)] = known  # the same files failed before: no new report
            return None
        try:
            model = load_model(self.model_dir / name / version)
        except ModelLoadError as exc:
            self._report(failed, key, LoadFailure(name, version, str(exc)))
            return None
        log.info("loaded model %s version %s", name, version)
        return model

    def _report(
        self, failed: dict[tuple[str, str], tuple[VersionKey, LoadFailure]], key: VersionKey, failure: LoadFailure
    ) -> None:
        failed[(failure.name, failure.version)] = (key, failure)
        known = self._failed.get((failure.name, failure.version))
        if known is not None and known[1] == failure:
            return
        log.error("model %s %s not loaded: %s", failure.name, failure.version, failure.error)
        if self._on_failure is not None:
            self._on_failure(failure)

    def _aliases(
        self,
        name: str,
        entry: ModelEntry,
        versions: set[str],
        failed: dict[tuple[str, str], tuple[VersionKey, LoadFailure]],
    ) -> dict[str, str]:
        """The pointer files, where they point at a loaded version; otherwise what the alias
        pointed at before (if still loaded), so a failed load never moves traffic."""
        before = self.registry.aliases(name) if self.registry.get(name) is not None else {}
        try:
            pointed = parse_aliases(self.model_dir / name, entry.pointers)
        except ModelLoadError as exc:
            self._report(failed, (), LoadFailure(name, ALIAS_PREFIX + "*", str(exc)))
            return {a: v for a, v in before.items() if v in versions}
        result: dict[str, str] = {}
        for alias in set(pointed) | set(before):
            target = pointed.get(alias)
            if target in versions:
                result[alias] = target
            elif target is not None and before.get(alias) in versions:
                result[alias] = before[alias]
        # Without a ``@default`` file (nor a kept one) the registry's rule decides: the newest.
        return result

    def _access(
        self, name: str, entry: ModelEntry, failed: dict[tuple[str, str], tuple[VersionKey, LoadFailure]]
    ) -> ModelAccess:
        try:
            return parse_access(self.model_dir / name, entry.access)
        except ModelLoadError as exc:
            # Fail closed: an unreadable access file restricts the whole model.
            self._report(failed, (), LoadFailure(name, ACCESS_FILE, str(exc)))
            return ModelAccess(restricted=True)
