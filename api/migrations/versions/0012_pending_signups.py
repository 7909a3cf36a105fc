"""Signups waiting for their email to be verified, and signup rate limits.

``pending_signups`` holds what a signup asked for (never the password, only its argon2
hash) until its link is followed or it expires; the worker purges expired rows. The signup
limits count in ``login_attempts``, whose ``kind`` widens to the signup counters, so one
table and one counting routine serve every PostgreSQL-backed limit. Read before anyone is
authenticated (the system scope): no row-level security.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LOGIN_KINDS = "kind IN ('account', 'address')"
ALL_KINDS = "kind IN ('account', 'address', 'signup_address', 'signup_domain', 'signup_user', 'signup_pending')"


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "pending_signups",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("idempotency_key", sa.String(300), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_domain", sa.String(255), nullable=False),
        sa.Column("organization_name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("account_exists", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_pending_signups_unverified", "pending_signups", ["email_domain", "expires_at"],
                    postgresql_where=sa.text("verified_at IS NULL"))
    op.create_index("ix_pending_signups_expires_at", "pending_signups", ["expires_at"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON pending_signups TO {_quote(app_role)}")

    op.alter_column("login_attempts", "kind", type_=sa.String(16))
    op.drop_constraint("ck_login_attempts_kind", "login_attempts")
    op.create_check_constraint("ck_login_attempts_kind", "login_attempts", ALL_KINDS)


def downgrade(app_role: str) -> None:
    op.execute("DELETE FROM login_attempts WHERE kind LIKE 'signup%'")
    op.drop_constraint("ck_login_attempts_kind", "login_attempts")
    op.create_check_constraint("ck_login_attempts_kind", "login_attempts", LOGIN_KINDS)
    op.alter_column("login_attempts", "kind", type_=sa.String(8))
    op.drop_table("pending_signups")
