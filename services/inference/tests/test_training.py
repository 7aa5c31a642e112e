"""The training command: the Pima recipe, hash checks, downloads, other CSVs, --if-missing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from inference_service.model_store import load_registry
from inference_service.train import main, train
from inference_service.training_data import TrainingDataError, read_csv, resolve
from modelgate_shared.testing import training_data_source
from modelgate_shared.training_data import DEFAULT_TRAINING_DATA_SHA256

from .conftest import FEATURES, write_synthetic_csv


@pytest.fixture
def train_env(env_clean: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    model_dir = tmp_path / "models"
    env_clean.setenv("MODELGATE_INFERENCE_MODEL_DIR", str(model_dir))
    env_clean.setenv("MODELGATE_INFERENCE_DATA_CACHE_DIR", str(tmp_path / "cache"))
    return model_dir


def test_default_model_from_the_pima_csv(train_env: Path, env_clean: pytest.MonkeyPatch) -> None:
    data = Path(training_data_source())
    if not data.is_file():
        pytest.skip("Pima CSV not found: set MODELGATE_TRAINING_DATA or provide ../shared/data/")
    env_clean.setenv("MODELGATE_TRAINING_DATA", str(data))
    assert main([]) == 0
    metadata = json.loads((train_env / "diabetes" / "1" / "metadata.json").read_text())
    assert metadata["name"] == "diabetes" and metadata["version"] == "1"
    assert [f["name"] for f in metadata["features"]] == list(FEATURES)
    assert metadata["classes"] == [0, 1] and metadata["target"] == "class"
    assert metadata["training_data"]["sha256"] == DEFAULT_TRAINING_DATA_SHA256
    assert metadata["training_data"]["rows"] == 768
    assert metadata["metrics"]["split"] == {"test_size": 0.33, "random_state": 7}
    assert metadata["metrics"]["test_rows"] == 254
    # The tutorial's logistic regression scores about 0.77 on this split.
    assert 0.74 <= metadata["metrics"]["accuracy"] <= 0.82
    assert (
        metadata["model_sha256"]
        == hashlib.sha256((train_env / "diabetes" / "1" / "model.skops").read_bytes()).hexdigest()
    )
    model = load_registry(train_env).get("diabetes")
    assert model is not None and model.version == "1"


def test_hash_mismatch_names_both_hashes(train_env: Path, tmp_path: Path, env_clean: pytest.MonkeyPatch) -> None:
    data = write_synthetic_csv(tmp_path / "other.csv")
    actual = hashlib.sha256(data.read_bytes()).hexdigest()
    env_clean.setenv("MODELGATE_TRAINING_DATA", str(data))
    with pytest.raises(TrainingDataError) as info:
        resolve(str(data), None, DEFAULT_TRAINING_DATA_SHA256)
    assert actual in str(info.value) and DEFAULT_TRAINING_DATA_SHA256 in str(info.value)
    assert main([]) == 1  # the default expected hash applies to MODELGATE_TRAINING_DATA
    assert not train_env.exists() or not any(train_env.iterdir())


def test_missing_file_is_a_clear_error(train_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "absent.csv")]) == 1
    assert "absent.csv: no such file" in capsys.readouterr().err


def test_if_missing_is_a_noop_when_a_model_exists(
    train_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(write_synthetic_csv(tmp_path / "synthetic.csv"))
    assert main(["--data", data]) == 0
    assert main(["--data", data, "--if-missing"]) == 0
    assert "not training" in capsys.readouterr().out
    assert sorted(p.name for p in (train_env / "diabetes").iterdir()) == ["1", "@default"]
    assert main(["--data", data]) == 0  # without the flag, a new version
    assert sorted(p.name for p in (train_env / "diabetes").iterdir()) == ["1", "2", "@default"]


def test_settings_errors_exit_2(env_clean: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_download_is_verified_and_cached(
    train_env: Path, tmp_path: Path, file_server: tuple[str, Path], env_clean: pytest.MonkeyPatch
) -> None:
    base, root = file_server
    data = write_synthetic_csv(root / "pima.csv")
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    env_clean.setenv("MODELGATE_TRAINING_DATA", f"{base}/pima.csv")
    env_clean.setenv("MODELGATE_TRAINING_DATA_SHA256", expected)
    assert main([]) == 0
    cached = list((tmp_path / "cache").glob("*pima.csv"))
    assert len(cached) == 1 and cached[0].read_bytes() == data.read_bytes()
    data.unlink()  # the cached copy is enough now
    assert main([]) == 0
    assert sorted(p.name for p in (train_env / "diabetes").iterdir()) == ["1", "2", "@default"]


def test_bad_download_is_not_cached(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    base, root = file_server
    (root / "wrong.csv").write_text("1,2\n")
    with pytest.raises(TrainingDataError, match="expected " + "0" * 64):
        resolve(f"{base}/wrong.csv", tmp_path / "cache", "0" * 64)
    with pytest.raises(TrainingDataError, match="404"):
        resolve(f"{base}/absent.csv", tmp_path / "cache", None)
    assert list((tmp_path / "cache").iterdir()) == []


def test_another_csv_with_a_header_and_string_labels(train_env: Path, tmp_path: Path) -> None:
    rows = ["petal,sepal,species"] + [f"{i % 7},{(i * 3) % 5},{'big' if i % 7 > 3 else 'small'}" for i in range(60)]
    data = tmp_path / "flowers.csv"
    data.write_text("\n".join(rows) + "\n")
    folder = train(model_dir=train_env, source=str(data), expected_sha256=None, name="flowers", target="species")
    model = load_registry(train_env).get("flowers")
    assert model is not None and model.path == folder
    assert model.features == ("petal", "sepal")
    assert model.classes == ("big", "small")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,class\n1,2,0\n1,x,1\n", "line 3, column 'b'"),
        ("a,b,class\n1,2,0\n1,2\n", "line 3: 2 fields, expected 3"),
        ("a,b,label\n1,2,0\n", "target column 'class' not among"),
        ("a,b,class\n1,2,0\n3,4,0\n", "single class"),
        ("a,a,class\n1,2,0\n", "duplicate column"),
        ("", "empty"),
        ("a,b,class\n", "no data rows"),
        ("1,2,0\n3,4,1\n", "pass the column names"),
    ],
)
def test_bad_training_csv(tmp_path: Path, text: str, message: str) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(text)
    with pytest.raises(TrainingDataError, match=message):
        read_csv(data, "class")


def test_the_launcher_command_line(tmp_path: Path) -> None:
    """Exactly what the launcher and compose run: ``python -m inference_service.train --if-missing``."""
    data = write_synthetic_csv(tmp_path / "data.csv")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")},
        "MODELGATE_INFERENCE_MODEL_DIR": str(tmp_path / "models"),
        "MODELGATE_TRAINING_DATA": str(data),
        "MODELGATE_TRAINING_DATA_SHA256": hashlib.sha256(data.read_bytes()).hexdigest(),
    }
    command = [sys.executable, "-m", "inference_service.train", "--if-missing"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "trained diabetes version 1" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "not training" in second.stdout
    wrong = subprocess.run(
        command[:-1],
        env={**env, "MODELGATE_TRAINING_DATA_SHA256": "f" * 64},
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 1
    assert "f" * 64 in wrong.stderr and env["MODELGATE_TRAINING_DATA_SHA256"] in wrong.stderr
