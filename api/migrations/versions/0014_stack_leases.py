"""Stack leases: which live worker runs engine operations on a stack (automation/leases.py).

One row per stack while an operation runs on it: the holder (host name, pid, random token),
the operation, the holder's PID namespace and the session of its engine process, and
a heartbeat-pushed expiry. System data, read and written by the workers only: no row-level
security, like login_attempts.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "stack_leases",
        sa.Column("stack", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process_namespace", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("operation_id", sa.Text()),
        sa.Column("session_id", sa.Integer()),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON stack_leases TO {_quote(app_role)}")


def downgrade(app_role: str) -> None:
    op.drop_table("stack_leases")
