"""Sign-in sessions: refresh-token families, their refresh tokens and the access tokens
issued from them, with the revocation mark that every request checks by ``jti``.

Only SHA-256 digests of refresh tokens are stored. Read before anyone is authenticated
(the system scope), so, like users and login_attempts, no row-level security.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_reason", sa.String(32)),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_sha256", sa.LargeBinary(32), primary_key=True),
        sa.Column("session_id", UUID(as_uuid=True), sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "access_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("session_id", UUID(as_uuid=True), sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON auth_sessions, refresh_tokens, access_tokens"
               f" TO {_quote(app_role)}")


def downgrade(app_role: str) -> None:
    op.drop_table("access_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("auth_sessions")
