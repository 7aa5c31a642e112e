"""service accounts: the clients table, and client authentications in the login history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_secret_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_clients_owner_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
    )
    op.create_index(op.f("ix_clients_owner_id"), "clients", ["owner_id"], unique=False)
    op.add_column("logins", sa.Column("client_id", sa.String(length=64), nullable=True))
    op.create_foreign_key(
        op.f("fk_logins_client_id_clients"), "logins", "clients", ["client_id"], ["id"], ondelete="CASCADE"
    )
    op.create_index("ix_logins_client_id_at", "logins", ["client_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_logins_client_id_at", table_name="logins")
    op.drop_constraint(op.f("fk_logins_client_id_clients"), "logins", type_="foreignkey")
    op.drop_column("logins", "client_id")
    op.drop_index(op.f("ix_clients_owner_id"), table_name="clients")
    op.drop_table("clients")
