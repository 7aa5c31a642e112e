"""Model management through the client and the CLI: upload a skops pipeline, predict with it,
list its versions, move aliases, restrict and unload it, delete it; refused uploads are typed."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io as sio
from conftest import ADMIN_PASSWORD, ADMIN_USERNAME, cli_login
from modelgate_client import AsyncClient, Client, Conflict, NotFound, PermissionDenied, ValidationError, cli
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

# The repository index and the model list need models:read besides admin; predict keeps the
# token off the one-a-second policy of models:read-only tokens (see conftest).
ADMIN_READER = "admin predict models:read"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class Iris:
    pipeline: Pipeline
    rows: pd.DataFrame
    file: Path  # the pipeline saved with skops (its types are all in skops' trusted set)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.file.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Iris:
    features, target = load_iris(return_X_y=True, as_frame=True)
    features.columns = COLUMNS
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, target)
    file = tmp_path_factory.mktemp("models") / "iris.skops"
    sio.dump(pipeline, file)
    return Iris(pipeline, features.iloc[::15].reset_index(drop=True), file)


@pytest.fixture
def name() -> str:
    return f"iris-{uuid.uuid4().hex[:8]}"


def admin(base_url: str) -> Client:
    return Client(base_url, username=ADMIN_USERNAME, password=ADMIN_PASSWORD, scope="admin")


def labels(predicted: Any) -> list[Any]:
    return [int(label) for label in predicted["label"]]


def test_upload_predict_version_alias_delete(base_url: str, user: tuple[str, str], iris: Iris, name: str) -> None:
    username, password = user
    expected = iris.pipeline.predict(iris.rows).tolist()
    with admin(base_url) as mg, Client(base_url, username=username, password=password) as person:
        created = mg.upload_model(name, iris.file, sample=iris.rows, description="iris, scaled")
        assert created["name"] == name and created["version"] == "1" and created["default_version"] == "1"
        assert created["features"] == COLUMNS and created["task"] == "classification"
        assert created["metadata"]["description"] == "iris, scaled"
        assert created["metadata"]["source"]["sha256"] == iris.sha256
        assert labels(person.predict(name, iris.rows)) == expected

        # Bytes, a named version, not the default; then an alias that points at it.
        second = mg.upload_model(name, iris.file.read_bytes(), version="2024-02", default=False)
        assert second["version"] == "2024-02" and second["default_version"] == "1"
        listing = mg.model_versions(name)
        assert [v["version"] for v in listing["versions"]] == ["1", "2024-02"]
        assert listing["default_version"] == "1" and listing["failed"] == []
        assert all(v["model_sha256"] and v["restricted"] is False for v in listing["versions"])

        moved = mg.set_alias(name, "production", "2024-02")
        assert moved == {"name": name, "alias": "production", "version": "2024-02"}
        assert labels(person.predict(name, iris.rows, version="production")) == expected
        with pytest.raises(Conflict) as pointed_at:
            mg.delete_model_version(name, "2024-02")
        assert pointed_at.value.status == 409 and "@production" in pointed_at.value.message
        with pytest.raises(Conflict):
            mg.upload_model(name, iris.file, version="2024-02")

        mg.set_alias(name, "default", "2024-02")
        assert mg.model_versions(name)["default_version"] == "2024-02"
        mg.delete_alias(name, "production")
        with pytest.raises(NotFound):
            mg.delete_alias(name, "production")
        with pytest.raises(NotFound):
            person.predict(name, iris.rows, version="production")

        mg.delete_model_version(name, "1")
        with pytest.raises(NotFound):
            mg.delete_model_version(name, "1")
        mg.set_alias(name, "default", "2024-02")  # the last version is the default
        mg.delete_model_version(name, "2024-02")  # the last one: the model is gone
        with pytest.raises(NotFound):
            person.model(name)
        with pytest.raises(NotFound):
            mg.model_versions(name)


def test_a_refused_upload_is_a_typed_error_with_the_servers_reason(
    base_url: str, user: tuple[str, str], iris: Iris, name: str
) -> None:
    data = iris.file.read_bytes()
    with admin(base_url) as mg:
        # Damaged before it was hashed (a truncated file): skops cannot read it.
        with pytest.raises(ValidationError) as truncated:
            mg.upload_model(name, data[: len(data) // 2])
        assert truncated.value.status == 422 and truncated.value.request_id
        assert "not a readable skops file" in truncated.value.message
        assert truncated.value.details[0]["loc"][:2] == ["body", "file"]

        # Not the file the caller meant (or damaged on the way): the hashes differ.
        with pytest.raises(ValidationError) as mismatch:
            mg.upload_model(name, iris.file, sha256="0" * 64)
        assert "sha256" in mismatch.value.message and iris.sha256 in mismatch.value.message

        with pytest.raises(ValidationError) as unpredictable:
            mg.upload_model(name, iris.file, sample=pd.DataFrame({"colour": ["red"]}))
        assert "sample" in unpredictable.value.message

        with pytest.raises(NotFound):  # nothing was kept
            mg.model_versions(name)

    username, password = user
    with Client(base_url, username=username, password=password) as person, pytest.raises(PermissionDenied) as denied:
        person.upload_model(name, iris.file)
    assert denied.value.status == 403 and "admin" in denied.value.message


async def test_access_and_the_v2_repository(base_url: str, user: tuple[str, str], iris: Iris, name: str) -> None:
    username, password = user
    async with (
        AsyncClient(base_url, username=ADMIN_USERNAME, password=ADMIN_PASSWORD, scope=ADMIN_READER) as mg,
        AsyncClient(base_url, username=username, password=password) as person,
    ):
        await mg.upload_model(name, iris.file, sample=iris.rows.head(3).to_csv(index=False).encode())
        assert len(await person.predict(name, iris.rows)) == len(iris.rows)
        index = await person.repository_index()
        assert {"name": name, "version": "1", "state": "READY", "reason": ""} in index

        restricted = await mg.set_model_access(name, True)
        assert restricted["restricted"] is True
        with pytest.raises(PermissionDenied) as denied:
            await person.predict(name, iris.rows)
        assert denied.value.status == 403
        assert name not in [entry["name"] for entry in await person.repository_index()]
        assert (await mg.model_versions(name))["versions"][0]["required_scope"] == f"predict:{name}"
        await mg.set_model_access(name, False)

        await mg.unload_model(name)
        with pytest.raises(NotFound):
            await person.predict(name, iris.rows)
        unloaded = [e for e in await mg.repository_index() if e["name"] == name]
        assert unloaded == [{"name": name, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
        assert name not in [e["name"] for e in await mg.repository_index(ready=True)]
        await mg.load_model(name)
        assert len(await person.predict(name, iris.rows)) == len(iris.rows)

        with pytest.raises(NotFound) as unknown:
            await mg.load_model(f"{name}-none")
        # The V2 body {"error": "..."} is the message, not an error code.
        assert unknown.value.code is None and "unknown model" in unknown.value.message

        await mg.delete_model_version(name, "1")


def test_cli_models_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base_url: str, config_folder: Path,
    iris: Iris, name: str, tmp_path: Path,
) -> None:  # fmt: skip
    sample = tmp_path / "sample.csv"
    iris.rows.to_csv(sample, index=False)
    scopes = [arg for scope in ADMIN_READER.split() for arg in ("--scope", scope)]
    assert cli_login(monkeypatch, base_url, ADMIN_USERNAME, ADMIN_PASSWORD, *scopes) == 0
    capsys.readouterr()

    upload = ["models", "upload", name, str(iris.file), "--sample", str(sample), "--description", "from the CLI"]
    assert cli.main([*upload, "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["version"] == "1" and created["metadata"]["description"] == "from the CLI"
    assert cli.main(["models", "upload", name, str(iris.file), "--version", "v2", "--no-default"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["NAME", "VERSION", "TASK"]
    assert table[1].split()[:4] == [name, "v2", "classification", "1"]

    assert cli.main(["models", "alias", name, "default", "v2"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == [name, "default", "v2"]
    assert cli.main(["models", "versions", name]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["VERSION", "ALIASES", "TASK"]
    assert [line.split()[:2] for line in table[1:]] == [["1", "-"], ["v2", "default"]]
    assert cli.main(["models", "--json", "versions", name]) == 0  # --json before the subcommand too
    assert json.loads(capsys.readouterr().out)["default_version"] == "v2"

    assert cli.main(["models", "delete", name, "v2"]) == 1  # the default points at it
    assert "409" in capsys.readouterr().err
    assert cli.main(["models", "delete", name, "1"]) == 0
    assert cli.main(["models", "delete", name, "1"]) == 1
    assert "404" in capsys.readouterr().err

    # A file that is no skops file: the server's reason, exit 1; a missing file: the OS's.
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a model at all")
    assert cli.main(["models", "upload", name, str(bad)]) == 1
    assert "422" in (err := capsys.readouterr().err) and "not a skops file" in err
    assert cli.main(["models", "upload", name, str(tmp_path / "none.skops")]) == 1
    assert "none.skops" in capsys.readouterr().err

    # `models` alone still lists the models.
    assert cli.main(["models", "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
