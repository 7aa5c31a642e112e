"""model scopes: scope arrays hold ``predict:<model>`` with a model name of up to 64 characters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# modelgate_shared.scopes.MAX_SCOPE_LENGTH as of this revision: len("predict:") + 64. Written
# out, not imported, so the migration keeps meaning what it meant.
SCOPE_LENGTH = 72
TABLES = ("users", "clients", "refresh_tokens")


def upgrade() -> None:
    for table in TABLES:
        op.alter_column(
            table,
            "scopes",
            type_=postgresql.ARRAY(sa.String(length=SCOPE_LENGTH)),
            existing_type=postgresql.ARRAY(sa.String(length=64)),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Fails (as it should) while a stored scope is longer than 64 characters.
    for table in TABLES:
        op.alter_column(
            table,
            "scopes",
            type_=postgresql.ARRAY(sa.String(length=64)),
            existing_type=postgresql.ARRAY(sa.String(length=SCOPE_LENGTH)),
            existing_nullable=False,
        )
