from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from auth_service.cli import VERSION_TABLE, main
from auth_service.issuing import hash_secret
from auth_service.keyring import key_files
from auth_service.models import Base
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
        assert version == "0006"  # the head revision
        return names

    expected = {"users", "clients", "refresh_tokens", "logins", "signing_keys", "revocations", "alembic_version_auth"}
    assert expected <= asyncio.run(tables())


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
    out = capsys.readouterr().out
    assert "deleted 0 expired refresh token(s), 0 login record(s), 0 username reservation(s)" in out


def test_rename_user(
    key_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    monkeypatch.setenv("MODELGATE_AUTH_BCRYPT_ROUNDS", "4")
    assert main(["migrate"]) == 0
    for name in ("alice", "bob"):
        monkeypatch.setattr("sys.stdin", io.StringIO("a password 123\n"))
        assert main(["create-user", name, "--email", f"{name}@example.com", "--password-stdin"]) == 0
    capsys.readouterr()
    assert main(["rename-user", "Alice", "Alicia"]) == 0
    assert "renamed alice to alicia" in capsys.readouterr().out
    # Taken, reserved by the grace period, unknown, invalid, unchanged: exit 1 with the reason.
    for args, message in (
        (["alicia", "BOB"], "username is already taken"),
        (["bob", "alice"], "username is already taken"),
        (["alice", "carol"], "no user named alice"),
        (["alicia", "a b"], "username must be"),
        (["alicia", "ALICIA"], "same username"),
    ):
        assert main(["rename-user", *args]) == 1, args
        assert message in capsys.readouterr().err, args

    async def history() -> list[tuple[str, str, str, str]]:
        eng = make_engine(database_url)
        async with eng.connect() as conn:
            rows = await conn.execute(
                text("SELECT event, previous_username, username, reason FROM logins WHERE user_id IS NOT NULL")
            )
            names = await conn.scalar(text("SELECT array_agg(username ORDER BY username) FROM users"))
        await eng.dispose()
        assert names == ["alicia", "bob"]
        return [tuple(r) for r in rows]

    assert asyncio.run(history()) == [("username_changed", "alice", "alicia", "cli")]


def test_the_migrations_build_the_models_schema(
    key_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head migration and ``models.py`` describe the same tables (Alembic's autogenerate diff)."""
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    assert main(["migrate"]) == 0

    async def diff() -> list[object]:
        eng = make_engine(database_url)
        async with eng.connect() as conn:
            found = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_name": lambda name, *_: name != VERSION_TABLE}),
                    Base.metadata,
                )
            )
        await eng.dispose()
        return list(found)

    assert asyncio.run(diff()) == []


def test_clients_commands(
    key_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELGATE_AUTH_DATABASE_URL", database_url)
    monkeypatch.setenv("MODELGATE_AUTH_BCRYPT_ROUNDS", "4")
    assert main(["migrate"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("alice password 123\n"))
    assert main(["create-user", "alice", "--email", "alice@example.com", "--password-stdin"]) == 0
    capsys.readouterr()

    assert main(["clients", "create", "nightly job", "--owner", "Alice", "--scope", "predict"]) == 0
    out = capsys.readouterr()
    client_id = out.out.split()[2]
    secret = out.out.split("client_secret: ")[1].strip()
    assert client_id.startswith("mgc_") and len(secret) >= 43
    assert "cannot be shown again" in out.err

    async def stored() -> tuple[str, bool, list[str]] | None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        text("SELECT secret_hash, disabled, scopes FROM clients WHERE id = :id"), {"id": client_id}
                    )
                ).first()
                return None if row is None else (row[0], row[1], list(row[2]))
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == (hash_secret(secret), False, ["predict"])
    assert main(["clients", "list"]) == 0
    listed = capsys.readouterr().out
    assert client_id in listed and "enabled" in listed and "nightly job" in listed and secret not in listed

    assert main(["clients", "rotate-secret", client_id, "--grace-seconds", "0"]) == 0
    new_secret = capsys.readouterr().out.split("client_secret: ")[1].strip()
    assert new_secret != secret
    assert asyncio.run(stored()) == (hash_secret(new_secret), False, ["predict"])
    assert main(["clients", "disable", client_id]) == 0
    assert f"disabled client {client_id}" in capsys.readouterr().out
    assert asyncio.run(stored()) == (hash_secret(new_secret), True, ["predict"])
    assert main(["clients", "enable", client_id]) == 0
    assert asyncio.run(stored()) == (hash_secret(new_secret), False, ["predict"])
    assert main(["clients", "delete", client_id]) == 0
    assert asyncio.run(stored()) is None
    capsys.readouterr()

    for args in (
        ["clients", "delete", client_id],
        ["clients", "disable", "mgc_nope"],
        ["clients", "create", "job", "--owner", "nobody"],
        ["clients", "create", "", "--owner", "alice"],
        ["clients", "rotate-secret", "mgc_nope", "--grace-seconds", "-1"],
    ):
        assert main(args) == 1, args
        assert capsys.readouterr().err.startswith("error: "), args
