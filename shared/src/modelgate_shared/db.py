"""Database helpers: URL normalisation, async engines, waiting for a server and Alembic upgrades."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The largest Postgres bigint, and what asyncpg can bind as an int64: ids and OFFSETs beyond it
# are refused by the driver at execution time, so parameters that reach SQL are bounded by it.
BIGINT_MAX = 2**63 - 1


def async_url(url: str) -> str:
    """Accept ``postgres://``/``postgresql://`` URLs and use the asyncpg driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"invalid database URL: {exc}") from None
    if parsed.get_backend_name() not in {"postgresql", "postgres"}:
        raise ValueError(f"database URL must be PostgreSQL, got {parsed.drivername!r}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """The same URL in the plain form asyncpg.connect() accepts."""
    return make_url(async_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        # SQLAlchemy's errors otherwise quote the statement's bound values (password hashes,
        # emails) into every message, and from there into logs and tracebacks.
        hide_parameters=True,
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def upgrade(script_location: Path, url: str, version_table: str, revision: str = "head") -> None:
    """Apply migrations; idempotent. Each service keeps its own version table so
    services can share one database without their histories colliding."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    cfg.attributes["version_table"] = version_table
    command.upgrade(cfg, revision)


# One connection attempt; a server this slow to accept is counted as not up yet.
CONNECT_TIMEOUT_SECONDS = 10.0


class MigrateWait(BaseSettings):
    """``MODELGATE_MIGRATE_WAIT_SECONDS``: how long ``migrate`` waits for a database that is not up yet."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_", extra="ignore", frozen=True)

    migrate_wait_seconds: float = Field(default=60.0, ge=0)


class DatabaseConnectError(RuntimeError):
    """The database cannot be reached (in time, or at all); the message names the setting."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def is_transient(exc: BaseException) -> bool:
    """Errors a server that is starting (or not listening yet) gives, which a retry can outlast.

    A wrong password, role, database or host name is not: retrying only delays the message.
    """
    # 57P03: the server accepts connections but is still starting up (or recovering).
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return True
    # Refused, reset, or closed before the server said anything: what a port forwarder in front
    # of a server that does not listen yet (Docker's published ports) gives, besides "refused".
    return isinstance(exc, ConnectionError | TimeoutError)


def _where(url: str) -> str:
    parsed = make_url(async_url(url))
    host = parsed.host or parsed.query.get("host") or "localhost"  # ?host=/dir: a Unix socket
    return f"{host}:{parsed.port or 5432}/{parsed.database or ''}"


def wait_for_database(
    url: str,
    *,
    url_setting: str,
    wait_seconds: float,
    interval_seconds: float = 1.0,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Connect once to ``url``, retrying transient failures for up to ``wait_seconds``.

    Raises :class:`DatabaseConnectError` at once for anything else. Messages name the server,
    never the password.
    """
    where = _where(url)
    dsn = asyncpg_dsn(url)
    deadline = time.monotonic() + wait_seconds
    attempts = 0
    while True:
        attempts += 1
        try:
            asyncio.run(_connect_once(dsn, connect_timeout=CONNECT_TIMEOUT_SECONDS))
            return
        except Exception as exc:  # classified below, re-raised as one error type
            reason = _reason(exc)
            if not is_transient(exc):
                raise DatabaseConnectError(
                    f"cannot connect to the database at {where} ({url_setting}): {reason}", attempts
                ) from None
            left = deadline - time.monotonic()
            if left <= 0 and wait_seconds <= 0:
                raise DatabaseConnectError(
                    f"cannot connect to the database at {where} ({url_setting}): {reason}", attempts
                ) from None
            if left <= 0:
                raise DatabaseConnectError(
                    f"database at {where} ({url_setting}) still unreachable after {wait_seconds:g} s: {reason} "
                    f"(MODELGATE_MIGRATE_WAIT_SECONDS sets how long to wait)",
                    attempts,
                ) from None
            report(f"waiting for the database at {where}: {reason} ({left:.0f} s left)")
            time.sleep(min(interval_seconds, left))


async def _connect_once(dsn: str, connect_timeout: float) -> None:
    connection = await asyncpg.connect(dsn, timeout=connect_timeout)
    await connection.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if type(exc) is ConnectionError:  # asyncpg's "unexpected connection_lost() call"
        return "connection closed before the server answered"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    return str(exc) or type(exc).__name__


def migrate(script_location: Path, url: str, version_table: str, *, url_setting: str) -> None:
    """What a service's ``migrate`` command runs: wait for the database, then upgrade.

    Exits 1 with one line on stderr when the database cannot be reached: an init job's log
    should say which setting to fix, not end in a driver's traceback.
    """
    from .settings import load_settings  # settings imports this module

    wait = load_settings(MigrateWait)
    try:
        wait_for_database(url, url_setting=url_setting, wait_seconds=wait.migrate_wait_seconds)
    except DatabaseConnectError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    upgrade(script_location, url, version_table)
