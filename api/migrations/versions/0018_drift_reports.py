"""Drift reports in the database (api.drift.store): each cameleer.drift/v1 report a worker's
on-demand check made or an operator stored from a scheduled run, so that every API process
reads the same newest report whatever host wrote it (they were files in one host's directory).

Platform data: a report spans every tenant's stacks, so no row belongs to one tenant and no
row-level security applies. Only the system role (the workers, the console's platform pages,
the operator CLI) reads and writes it; the app role gets no privilege at all.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.Text()),
        # What makes a second write of the same report a no-op: the job, or the document's digest.
        sa.Column("idempotency_key", sa.Text(), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("body", JSONB(), nullable=False),
        sa.CheckConstraint("kind IN ('scheduled', 'on-demand')", name="ck_drift_reports_kind"),
    )
    op.create_index("ix_drift_reports_newest", "drift_reports", [sa.text("created_at DESC"), sa.text("id DESC")])
    system = _quote(context.config.attributes["system_role"])
    op.execute(f"GRANT SELECT, INSERT, DELETE ON drift_reports TO {system}")


def downgrade(app_role: str) -> None:
    op.drop_table("drift_reports")
