"""``python -m auth_service``: migrate, keys generate|rotate|list, create-user, rename-user,
clients create|list|rotate-secret|disable|enable|delete, prune."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelgate_shared.db import make_engine, migrate
from modelgate_shared.keys import SUPPORTED_ALGORITHMS, KeyMaterialError
from modelgate_shared.scopes import BASE_SCOPES, MODEL_SCOPE_PREFIX, is_known_scope, ordered_scopes
from modelgate_shared.settings import load_settings
from modelgate_shared.usernames import normalise_username
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from .accounts import UserConflict, UserGone, create_user, rename_user, user_by_username
from .housekeeping import prune
from .issuing import ADMIN_SCOPES, DEFAULT_SCOPES
from .keyring import KeyRing, create_key, key_files, publish
from .login_history import username_change
from .passwords import PasswordHasher, password_problem
from .revocation import Revocations
from .schemas import ClientName, Email, FullName
from .service_accounts import (
    IssuedSecret,
    client_by_id,
    create_client,
    delete_client,
    page_of_clients,
    rotate_secret,
    set_disabled,
)
from .settings import AuthSettings, KeySettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_auth"


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit 1."""


def scope_argument(value: str) -> str:
    """``--scope``: a base scope or ``predict:<model>`` (argparse's usage error otherwise)."""
    if not is_known_scope(value):
        known = ", ".join(BASE_SCOPES)
        # Cut short: an argument can be any length.
        raise argparse.ArgumentTypeError(f"unknown scope {value[:80]!r} (known: {known}, {MODEL_SCOPE_PREFIX}<model>)")
    return value


def cmd_migrate(_args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    migrate(MIGRATIONS, settings.database_url, VERSION_TABLE, url_setting="MODELGATE_AUTH_DATABASE_URL")
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


async def _rename_user(settings: AuthSettings, old: str, new: str) -> str | None:
    """The user's id, once renamed; None when ``old`` names no account."""
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    now = datetime.now(UTC)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            user = await user_by_username(session, old)
            if user is None:
                return None
            previous = await rename_user(session, user, new, now, timedelta(days=settings.username_reuse_grace_days))
            if previous is not None:
                session.add(username_change(user, previous, now, "cli"))
            await session.commit()
            return str(user.id)
    finally:
        await engine.dispose()


def cmd_rename_user(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    try:
        old = normalise_username(args.old)
        new = normalise_username(args.new)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if old == new:
        raise CommandError(f"{args.old!r} and {args.new!r} are the same username")
    try:
        user_id = asyncio.run(_rename_user(settings, old, new))
    except UserConflict as exc:
        raise CommandError(str(exc)) from None
    except UserGone:
        user_id = None
    if user_id is None:
        raise CommandError(f"no user named {old}")
    print(f"renamed {old} to {new} ({user_id}); {old} stays reserved for {settings.username_reuse_grace_days} day(s)")


async def _create_client(settings: AuthSettings, name: str, owner: str, scopes: list[str]) -> IssuedSecret:
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            user = await user_by_username(session, owner)
            if user is None:
                raise CommandError(f"no user named {owner} to own the client")
            issued = await create_client(session, name=name, owner_id=user.id, scopes=scopes, now=datetime.now(UTC))
            await session.commit()
            return issued
    finally:
        await engine.dispose()


def cmd_clients_create(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    try:
        name = TypeAdapter(ClientName).validate_python(args.name)
        owner = normalise_username(args.owner)
    except ValidationError as exc:
        raise CommandError(f"name: {exc.errors()[0]['msg']}") from None
    except ValueError as exc:
        raise CommandError(f"--owner: {exc}") from None
    scopes = list(ordered_scopes(args.scope or DEFAULT_SCOPES))
    issued = asyncio.run(_create_client(settings, name, owner, scopes))
    print(f"created client {issued.client.id} ({name}, owner {owner}, scopes {' '.join(scopes)})")
    print(f"client_secret: {issued.secret}")
    print("store the secret now: it is not kept and cannot be shown again", file=sys.stderr)


async def _list_clients(settings: AuthSettings) -> list[tuple[str, str, str, str, bool]]:
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with async_sessionmaker(engine)() as session:
            rows, offset = [], 0
            while True:
                clients, total = await page_of_clients(session, 200, offset)
                rows += [(c.id, c.name, str(c.owner_id), " ".join(c.scopes), c.disabled) for c in clients]
                offset += len(clients)
                if not clients or offset >= total:
                    return rows
    finally:
        await engine.dispose()


def cmd_clients_list(_args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    for client_id, name, owner, scopes, disabled in asyncio.run(_list_clients(settings)):
        print(f"{client_id}  {'disabled' if disabled else 'enabled':8}  owner {owner}  [{scopes}]  {name}")


async def _change_client(settings: AuthSettings, client_id: str, change: str, grace: timedelta | None = None) -> str:
    """Apply ``change`` (rotate, disable, enable, delete) to a client; the new secret for rotate.
    Disabling and deleting publish the revocation to the gateway's Redis, as the API does."""
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    revocations = Revocations(settings.redis_url, settings.redis_key_prefix, settings.access_token_ttl_seconds)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            client = await client_by_id(session, client_id, for_update=True)
            if client is None:
                raise CommandError(f"no client with id {client_id[:64]!r}")
            secret = ""
            if change == "rotate":
                assert grace is not None
                secret = rotate_secret(client, datetime.now(UTC), grace).secret
            elif change == "delete":
                await delete_client(session, client)
            else:
                set_disabled(session, client, change == "disable")
            await session.commit()
            await revocations.publish(session)
            return secret
    finally:
        await revocations.aclose()
        await engine.dispose()


def cmd_clients_rotate(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    seconds = settings.client_secret_rotation_grace_seconds if args.grace_seconds is None else args.grace_seconds
    if not 0 <= seconds <= 30 * 86400:
        raise CommandError("--grace-seconds must be within 0..2592000 (30 days)")
    secret = asyncio.run(_change_client(settings, args.client_id, "rotate", timedelta(seconds=seconds)))
    print(f"new secret for client {args.client_id}; the previous one works for {seconds} more second(s)")
    print(f"client_secret: {secret}")
    print("store the secret now: it is not kept and cannot be shown again", file=sys.stderr)


def cmd_clients_change(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    asyncio.run(_change_client(settings, args.client_id, args.change))
    print(f"{args.change}d client {args.client_id}" if args.change != "delete" else f"deleted client {args.client_id}")


async def _prune(settings: AuthSettings, retention: timedelta) -> tuple[int, int, int, int]:
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with async_sessionmaker(engine)() as session:
            return await prune(session, datetime.now(UTC), retention, settings.access_token_ttl_seconds)
    finally:
        await engine.dispose()


def cmd_prune(args: argparse.Namespace) -> None:
    settings = load_settings(AuthSettings)
    tokens, logins, names, revocations = asyncio.run(_prune(settings, timedelta(days=args.logins_older_than_days)))
    print(
        f"deleted {tokens} expired refresh token(s), {logins} login record(s), "
        f"{names} username reservation(s) past their grace period "
        f"and {revocations} revocation(s) whose tokens have all expired"
    )


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

    rename = commands.add_parser(
        "rename-user", help="rename a user (the id stays; the old name stays reserved to them for the grace period)"
    )
    rename.add_argument("old")
    rename.add_argument("new")
    rename.set_defaults(func=cmd_rename_user)

    clients = commands.add_parser("clients", help="manage service accounts (client_credentials clients)")
    client_commands = clients.add_subparsers(dest="clients_command", required=True)
    client_create = client_commands.add_parser("create", help="create a service account; prints its secret once")
    client_create.add_argument("name")
    client_create.add_argument("--owner", required=True, help="username of the accountable user")
    client_create.add_argument(
        "--scope",
        action="append",
        type=scope_argument,
        help=(
            f"{', '.join(BASE_SCOPES)} or {MODEL_SCOPE_PREFIX}<model>; repeat for several"
            f" (default: {' '.join(DEFAULT_SCOPES)})"
        ),
    )
    client_create.set_defaults(func=cmd_clients_create)
    client_commands.add_parser("list", help="list service accounts").set_defaults(func=cmd_clients_list)
    client_rotate = client_commands.add_parser(
        "rotate-secret", help="print a new secret; the old one works for the grace period"
    )
    client_rotate.add_argument("client_id")
    client_rotate.add_argument(
        "--grace-seconds", type=int, help="default: MODELGATE_AUTH_CLIENT_SECRET_ROTATION_GRACE_SECONDS; 0: none"
    )
    client_rotate.set_defaults(func=cmd_clients_rotate)
    for change, text in (
        ("disable", "disable a service account (its tokens end within seconds)"),
        ("enable", "enable a disabled service account"),
        ("delete", "delete a service account and its login history (its tokens end)"),
    ):
        command = client_commands.add_parser(change, help=text)
        command.add_argument("client_id")
        command.set_defaults(func=cmd_clients_change, change=change)

    pruning = commands.add_parser(
        "prune",
        help="delete expired refresh tokens, old login history, expired username reservations and spent revocations",
    )
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
