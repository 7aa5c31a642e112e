"""``python -m gateway_service migrate``: apply the gateway's migrations (idempotent)."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelgate_shared.db import migrate as migrate_database
from modelgate_shared.settings import load_settings

from .settings import ENV_PREFIX, MigrateSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_gateway"


def migrate(database_url: str) -> None:
    migrate_database(MIGRATIONS, database_url, VERSION_TABLE, url_setting=f"{ENV_PREFIX}DATABASE_URL")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway_service", description="modelgate gateway administration")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or upgrade the request_log table")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        settings = load_settings(MigrateSettings)
        migrate(settings.database_url)
        print("gateway migrations applied")
    return 0
