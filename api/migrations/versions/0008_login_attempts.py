"""Login throttling: recent failed logins per account and per client address, and lockouts.

Not tenant data and read before anyone is authenticated (the system scope), so, like users
and signing_keys, no row-level security.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "login_attempts",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("kind", "key"),
        sa.CheckConstraint("kind IN ('account', 'address')", name="ck_login_attempts_kind"),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON login_attempts TO {_quote(app_role)}")


def downgrade(app_role: str) -> None:
    op.drop_table("login_attempts")
