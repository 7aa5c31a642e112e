"""username changes: reserved old names, account events in the login history

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "username_reservations",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_username_reservations_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_username_reservations")),
    )
    op.create_index(op.f("ix_username_reservations_user_id"), "username_reservations", ["user_id"], unique=False)
    # Every existing row is a /token attempt.
    op.add_column("logins", sa.Column("event", sa.String(length=32), server_default="token", nullable=False))
    op.add_column("logins", sa.Column("previous_username", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("logins", "previous_username")
    op.drop_column("logins", "event")
    op.drop_index(op.f("ix_username_reservations_user_id"), table_name="username_reservations")
    op.drop_table("username_reservations")
