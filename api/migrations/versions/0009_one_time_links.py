"""Mailed single-use links (email verification, invitations, password resets).

Only the token's SHA-256 is stored. Read before anyone is authenticated (the system
scope), so, like users and login_attempts, no row-level security.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "one_time_links",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id", ondelete="CASCADE")),
        sa.Column("payload", JSONB(), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_one_time_links_subject", "one_time_links", ["purpose", "subject"],
                    postgresql_where=sa.text("used_at IS NULL"))
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON one_time_links TO {_quote(app_role)}")


def downgrade(app_role: str) -> None:
    op.drop_table("one_time_links")
