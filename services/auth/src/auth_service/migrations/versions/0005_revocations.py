"""revocations: access-token not-befores kept in Postgres, so they survive a Redis restart

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("kind", sa.String(length=3), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "target", name=op.f("pk_revocations")),
    )
    op.create_index(op.f("ix_revocations_not_before"), "revocations", ["not_before"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_revocations_not_before"), table_name="revocations")
    op.drop_table("revocations")
