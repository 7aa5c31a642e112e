"""``python -m auth_service``: migrate, keys generate|rotate|list, create-user, prune."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelgate_shared.db import make_engine, upgrade
from modelgate_shared.keys import SUPPORTED_ALGORITHMS, KeyMaterialError
from modelgate_shared.settings import load_settings
from modelgate_shared.usernames import normalise_username
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from .accounts import UserConflict, create_user
from .housekeeping import prune
from .issuing import ADMIN_SCOPES, DEFAULT_SCOPES
from .keyring import KeyRing, create_key, key_files, publish
from .passwords import PasswordHasher, password_problem
from .schemas import Email, FullName
from .settings import AuthSettings, KeySettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_auth"


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit 1."""


def cmd_migrate(_args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    upgrade(MIGRATIONS, settings.database_url, VERSION_TABLE)
    print("auth database is up to date")


def _loaded_ring(settings: KeySettings) -> KeyRing:
    ring = KeyRing(settings.keys_dir, settings.signing_kid)
    ring.load()
    return ring


def cmd_keys_generate(args: argparse.Namespace) -> None:
    settings = load_settings(KeySettings)
    if args.if_missing and key_files(settings.keys_dir):
        ring = _loaded_ring(settings)
        publish(ring, settings.public_jwks_file)
        print(f"signing key present (kid {ring.signing.kid}); nothing generated")
        return
    _make_key(settings, args.algorithm)


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    settings = load_settings(KeySettings)
    if settings.signing_kid:
        raise CommandError("MODELGATE_AUTH_SIGNING_KID pins the signing key; unset it (or change it) to rotate")
    previous = len(key_files(settings.keys_dir))
    _make_key(settings, args.algorithm)
    if previous:
        print(
            f"{previous} older key(s) stay published so tokens they signed verify until they expire; "
            "delete an old key file once the access-token lifetime has passed"
        )


def _make_key(settings: KeySettings, algorithm: str | None) -> None:
    path = create_key(settings.keys_dir, algorithm or settings.key_algorithm)
    ring = _loaded_ring(settings)
    publish(ring, settings.public_jwks_file)
    print(f"new {ring.signing.algorithm} signing key {ring.signing.kid} written to {path}")
    if settings.public_jwks_file:
        print(f"public keys published to {settings.public_jwks_file}")


def cmd_keys_list(_args: argparse.Namespace) -> None:
    settings = load_settings(KeySettings)
    ring = _loaded_ring(settings)
    for key in ring.keys:
        created = datetime.fromtimestamp(key.path.stat().st_mtime, UTC).isoformat(timespec="seconds")
        marker = "signing" if key.kid == ring.signing.kid else "published"
        print(f"{key.kid}  {key.algorithm}  {marker:9}  {created}  {key.path.name}")


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("passwords do not match")
    problem = password_problem(password)
    if problem:
        raise CommandError(problem)
    return password


async def _create_user(
    settings: AuthSettings, username: str, email: str, password: str, admin: bool, full_name: str | None
) -> str:
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    hasher = PasswordHasher(settings.bcrypt_rounds)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            user = await create_user(
                session,
                hasher,
                username=username,
                email=email,
                password=password,
                full_name=full_name,
                scopes=ADMIN_SCOPES if admin else DEFAULT_SCOPES,
            )
            return str(user.id)
    finally:
        hasher.close()
        await engine.dispose()


def cmd_create_user(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    try:
        username = normalise_username(args.username)
        email = TypeAdapter(Email).validate_python(args.email)
    except ValueError as exc:  # ValidationError is a ValueError
        message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise CommandError(message) from None
    try:
        # The same rules as the API's full_name (no NUL or control characters, at most 200).
        full_name = None if args.full_name is None else TypeAdapter(FullName).validate_python(args.full_name)
    except ValidationError as exc:
        raise CommandError(f"--full-name: {exc.errors()[0]['msg']}") from None
    password = _read_password(args)
    try:
        user_id = asyncio.run(_create_user(settings, username, email, password, args.admin, full_name))
    except UserConflict as exc:
        raise CommandError(str(exc)) from None
    role = "admin" if args.admin else "user"
    print(f"created {role} {username} ({user_id})")


async def _prune(settings: AuthSettings, retention: timedelta) -> tuple[int, int]:
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with async_sessionmaker(engine)() as session:
            return await prune(session, datetime.now(UTC), retention)
    finally:
        await engine.dispose()


def cmd_prune(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    tokens, logins = asyncio.run(_prune(settings, timedelta(days=args.logins_older_than_days)))
    print(f"deleted {tokens} expired refresh token(s) and {logins} login record(s)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m auth_service", description="modelgate auth administration")
    commands = root.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply database migrations (idempotent)").set_defaults(func=cmd_migrate)

    keys = commands.add_parser("keys", help="manage signing keys").add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="write a new signing key")
    generate.add_argument("--if-missing", action="store_true", help="do nothing when a key already exists")
    generate.add_argument(
        "--algorithm", choices=sorted(SUPPORTED_ALGORITHMS), help="default: MODELGATE_AUTH_KEY_ALGORITHM"
    )
    generate.set_defaults(func=cmd_keys_generate)
    rotate = keys.add_parser("rotate", help="add a new signing key; older keys stay published")
    rotate.add_argument("--algorithm", choices=sorted(SUPPORTED_ALGORITHMS))
    rotate.set_defaults(func=cmd_keys_rotate)
    keys.add_parser("list", help="list keys (kid, algorithm, role)").set_defaults(func=cmd_keys_list)

    create = commands.add_parser("create-user", help="create a user (or an admin with --admin)")
    create.add_argument("username")
    create.add_argument("--email", required=True)
    create.add_argument("--full-name")
    create.add_argument("--admin", action="store_true", help="grant the admin scope")
    create.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")
    create.set_defaults(func=cmd_create_user)

    pruning = commands.add_parser("prune", help="delete expired refresh tokens and old login history")
    pruning.add_argument("--logins-older-than-days", type=int, default=90, metavar="DAYS")
    pruning.set_defaults(func=cmd_prune)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (CommandError, KeyMaterialError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
