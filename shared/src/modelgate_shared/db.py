"""Database helpers: URL normalisation, async engines and Alembic upgrades."""

from __future__ import annotations

from pathlib import Path

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
