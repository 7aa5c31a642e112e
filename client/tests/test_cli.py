"""The ``modelgate`` CLI, run in-process against the stack, with a config folder of its own."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USERNAME, FEATURES
from conftest import cli_login as login
from modelgate_client import cli, config

pytestmark = pytest.mark.usefixtures("config_folder")


def test_login_stores_the_session_privately(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base_url: str, user: tuple[str, str],
    config_folder: Path,
) -> None:  # fmt: skip
    username, password = user
    assert login(monkeypatch, base_url, username, password, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["username"] == username
    path = config_folder / config.CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_folder.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["base_url"] == base_url and stored["refresh_token"]
    assert password not in path.read_text()

    # The stored session works (no --base-url: the login's), and logout ends it at the server too.
    assert cli.main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert "diabetes" in [m["name"] for m in models]
    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "NAME" and any(line.startswith("diabetes") for line in table[1:])

    live = json.loads(path.read_text())["refresh_token"]
    assert cli.main(["logout"]) == 0
    assert not path.exists()
    reuse = httpx.post(f"{base_url}/auth/token", data={"grant_type": "refresh_token", "refresh_token": live})
    assert reuse.status_code == 400
    assert cli.main(["models"]) == 1
    assert "not logged in" in capsys.readouterr().err


def test_wrong_password_fails_without_storing_or_echoing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base_url: str, user: tuple[str, str],
    config_folder: Path,
) -> None:  # fmt: skip
    username, password = user
    wrong = password + "-wrong"
    assert login(monkeypatch, base_url, username, wrong) == 1
    err = capsys.readouterr().err
    assert "invalid_grant" in err and wrong not in err
    assert not (config_folder / config.CREDENTIALS_FILE).exists()


def test_predict_a_csv_in_batches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base_url: str, user: tuple[str, str],
    patients_csv: Path, tmp_path: Path,
) -> None:  # fmt: skip
    username, password = user
    assert login(monkeypatch, base_url, username, password) == 0
    out = tmp_path / "out.csv"
    rows = len(patients_csv.read_text().splitlines()) - 1
    # 768 rows in batches of 100: eight requests, one header row in the output.
    code = cli.main(["predict", str(patients_csv), "-o", str(out), "--model", "diabetes", "--batch-rows", "100"])
    assert code == 0
    with out.open(newline="") as file:
        table = list(csv.reader(file))
    assert table[0][: len(FEATURES)] == list(FEATURES)
    assert len(table) == rows + 1
    assert [r[0] for r in table[1:4]] == [line.split(",")[0] for line in patients_csv.read_text().splitlines()[1:4]]

    # A batch the server refuses: an error, and no output file at all (nor a partial one).
    bad = tmp_path / "bad.csv"
    bad.write_text(patients_csv.read_text() + "1,2,3,4,5,6,7,not-a-number\n")
    failed = tmp_path / "failed.csv"
    assert cli.main(["predict", str(bad), "-o", str(failed), "--model", "diabetes", "--batch-rows", "100"]) == 1
    assert "422" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad.csv", "config", "out.csv"])

    assert cli.main(["predict", str(patients_csv), "--json", "--batch-rows", "500"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == rows and "label" in predictions[0]


def test_admin_commands(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base_url: str) -> None:
    assert login(monkeypatch, base_url, ADMIN_USERNAME, ADMIN_PASSWORD, "--scope", "admin") == 0
    capsys.readouterr()
    assert cli.main(["clients", "create", "cli job", "--scope", "predict", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["client_id"] and created["client_secret"] and created["scopes"] == ["predict"]

    assert cli.main(["usage", "--json"]) == 0
    assert "users" in json.loads(capsys.readouterr().out)
    assert cli.main(["usage"]) == 0
    assert capsys.readouterr().out.startswith("USER_SUB")

    # The service account through the environment: the CLI predicts as the program would.
    monkeypatch.setenv(cli.CLIENT_ID_ENV, created["client_id"])
    monkeypatch.setenv(cli.CLIENT_SECRET_ENV, created["client_secret"])
    assert cli.main(["clients", "list", "--json"]) == 1  # predict only: not an admin
    err = capsys.readouterr().err
    assert "403" in err and created["client_secret"] not in err
