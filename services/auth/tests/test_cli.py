from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from auth_service.cli import main
from auth_service.keyring import key_files
from modelgate_shared.db import make_engine
from sqlalchemy import inspect, text


@pytest.fixture
def key_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELGATE_AUTH_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("MODELGATE_AUTH_PUBLIC_JWKS_FILE", str(tmp_path / "public" / "jwks.json"))
    # ES256 keeps key generation fast; RS256 is covered by the API tests.
    monkeypatch.setenv("MODELGATE_AUTH_KEY_ALGORITHM", "ES256")
    monkeypatch.delenv("MODELGATE_AUTH_DATABASE_URL", raising=False)
    return tmp_path


def test_keys_generate_if_missing_is_idempotent_and_needs_no_database(
    key_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--if-missing"]) == 0
    assert main(["keys", "generate", "--if-missing"]) == 0
    assert len(key_files(key_env / "keys")) == 1
    assert "nothing generated" in capsys.readouterr().out
    jwks = json.loads((key_env / "public" / "jwks.json").read_text())
    assert len(jwks["keys"]) == 1
    assert "d" not in jwks["keys"][0]


def test_rotate_adds_a_signing_key_and_list_shows_both(key_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate"]) == 0
    assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert sum("signing" in line for line in lines) == 1
    assert "signing" in lines[-1]
    assert len(json.loads((key_env / "public" / "jwks.json").read_text())["keys"]) == 2
    assert "PRIVATE" not in "".join(lines)


def test_keys_list_without_keys_fails_with_a_message(key_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 1
    assert "keys generate" in capsys.readouterr().err


def test_missing_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODELGATE_AUTH_KEYS_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["keys", "list"])
    assert exc.value.code == 2
    assert "MODELGATE_AUTH_KEYS_DIR" in capsys.readouterr().err


def test_migrate_is_idempotent_and_uses_its_own_version_table(
    key_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0

    async def tables() -> set[str]:
        eng = make_engine(database_url)
        async with eng.connect() as conn:
            names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            version = await conn.scalar(text("SELECT version_num FROM alembic_version_auth"))
        await eng.dispose()
        assert version == "0002"  # the head revision
        return names

    assert {"users", "refresh_tokens", "logins", "signing_keys", "alembic_version_auth"} <= asyncio.run(tables())


def test_create_user_from_stdin(
    key_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    monkeypatch.setenv("MODELGATE_AUTH_BCRYPT_ROUNDS", "4")
    assert main(["migrate"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("root password 123\n"))
    assert main(["create-user", "Root", "--email", "root@example.com", "--admin", "--password-stdin"]) == 0
    assert "created admin root" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("root password 123\n"))
    assert main(["create-user", "root", "--email", "x@example.com", "--password-stdin"]) == 1
    assert "username is already taken" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["create-user", "bob", "--email", "bob@example.com", "--password-stdin"]) == 1
    assert "at least 10" in capsys.readouterr().err
    assert main(["create-user", "bob", "--email", "nope", "--password-stdin"]) == 1
    assert "email" in capsys.readouterr().err.lower()


def test_prune_command(
    key_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    assert main(["migrate"]) == 0
    assert main(["prune", "--logins-older-than-days", "30"]) == 0
    assert "deleted 0 expired refresh token(s) and 0 login record(s)" in capsys.readouterr().out
