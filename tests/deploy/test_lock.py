"""One pinned dependency set: the lock files, and the venv, CI and every image installing from them.

``make lock`` writes the locks from the pyproject files; these checks fail when a declared
dependency is missing from a lock or its pin no longer satisfies the declaration (run
``make lock``), and when an install path stops using the lock.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("auth", "inference", "gateway")
OWN_PACKAGES = {"modelgate-shared", "modelgate-auth", "modelgate-inference", "modelgate-gateway"}
DEV_LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins(lock: Path) -> dict[str, set[str]]:
    """Package name -> pinned versions (more than one where markers split, e.g. by Python version)."""
    pins: dict[str, set[str]] = {}
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            pins.setdefault(canonicalize_name(match.group(1)), set()).add(match.group(2))
    return pins


def _blocks(lock: Path) -> list[str]:
    """One requirement with its continuation lines per item."""
    blocks: list[str] = []
    for line in lock.read_text().splitlines():
        if PIN.match(line):
            blocks.append(line)
        elif line.startswith(" ") and blocks:
            blocks[-1] += "\n" + line
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"{lock.name}: unexpected line {line!r}")
    return blocks


def _requirements(package: str, extras: tuple[str, ...] = ()) -> list[Requirement]:
    project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
    declared = list(project.get("dependencies", []))
    for extra in extras:
        declared += project.get("optional-dependencies", {})[extra]
    return [r for r in map(Requirement, declared) if canonicalize_name(r.name) not in OWN_PACKAGES]


def _dev_requirements() -> list[Requirement]:
    return [
        *_requirements("shared", ("stack", "test")),
        *(r for svc in APP_SERVICES for r in _requirements(f"services/{svc}", ("test",))),
    ]


def _image_requirements(service: str) -> list[Requirement]:
    return [*_requirements("shared"), *_requirements(f"services/{service}")]


def _assert_locked(lock: Path, requirements: list[Requirement]) -> None:
    pins = _pins(lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is declared but not in {lock.relative_to(ROOT)}: run make lock"
        stale = {v for v in pins[name] if not requirement.specifier.contains(v, prereleases=True)}
        assert not stale, f"{lock.relative_to(ROOT)} pins {name}=={stale}, outside {requirement}: run make lock"


@pytest.mark.parametrize(
    "lock",
    [DEV_LOCK, *(ROOT / "services" / s / "requirements.lock" for s in APP_SERVICES)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    blocks = _blocks(lock)
    assert blocks
    for block in blocks:
        assert "--hash=sha256:" in block, f"{lock.name}: no hash for {block.splitlines()[0]}"
    # The project's own packages are installed from the checkout, never from an index.
    assert not OWN_PACKAGES & set(_pins(lock))


def test_the_dev_lock_covers_every_declared_dependency() -> None:
    _assert_locked(DEV_LOCK, _dev_requirements())


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_image_lock_covers_its_service_at_the_dev_locks_versions(service: str) -> None:
    lock = ROOT / "services" / service / "requirements.lock"
    _assert_locked(lock, _image_requirements(service))
    dev = _pins(DEV_LOCK)
    for name, versions in _pins(lock).items():
        assert versions <= dev.get(name, set()), (
            f"{lock.relative_to(ROOT)}: {name}=={versions}, the dev lock has {dev.get(name)}"
        )


@pytest.mark.parametrize("service", APP_SERVICES)
def test_images_install_from_their_lock_and_resolve_nothing_else(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text().replace("\\\n", " ")
    builder = re.split(r"(?im)^FROM\s+", text)[1]
    installs = re.findall(r"(?m)^RUN\s+.*\bpip install\b.*$", builder)
    assert installs, "no pip install in the builder stage"
    lock = f"services/{service}/requirements.lock"
    assert re.search(rf"(?m)^COPY\s+{re.escape(lock)}\s", builder), "the lock must be copied into the build"
    first = installs[0]
    assert "--require-hashes" in first and "--no-deps" in first and re.search(rf"-r\s+\S*{re.escape(lock)}\b", first)
    # Everything after the lock installs only the project's own packages, resolving nothing.
    for command in installs[1:]:
        assert "--no-deps" in command, command
    assert "pip check" in installs[-1]


def test_the_venv_installs_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = re.search(r"(?ms)^\$\(STAMP\):([^\n]*)\n((?:\t[^\n]*\n)+)", makefile)
    assert recipe, "no $(STAMP) rule"
    prerequisites, commands = recipe.group(1), recipe.group(2)
    assert "requirements.lock" in prerequisites, "the venv must be rebuilt when the lock changes"
    installs = [line for line in commands.splitlines() if "install" in line]
    assert installs and "--require-hashes" in installs[0] and "-r requirements.lock" in installs[0]
    for line in installs[1:]:
        assert "--no-deps" in line, line
    assert "$(PIP) check" in commands
    # CI builds its venv through make (lint and test both depend on the stamp).
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"(?m)^make (lint|test)\b", ci) and "pip install" not in ci
    for target in ("lint", "test"):
        assert re.search(rf"(?m)^{target}:.*\$\(STAMP\)", makefile), target
