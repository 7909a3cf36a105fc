"""One current license per tenant, and the renewal's lookup of current licenses by expiry.

The hourly license renewal (api/licensing/renewal.py) locks the current license before it
issues the next one; this index makes a second current license impossible whatever runs
concurrently. Issuing supersedes the previous license before inserting the next one in the
same flush, so the index holds at every statement.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(app_role: str) -> None:
    op.execute("CREATE UNIQUE INDEX uq_licenses_current ON licenses (tenant_id) WHERE superseded_at IS NULL")
    op.execute("CREATE INDEX ix_licenses_current_expiry ON licenses (expires_at) WHERE superseded_at IS NULL")


def downgrade(app_role: str) -> None:
    op.execute("DROP INDEX ix_licenses_current_expiry")
    op.execute("DROP INDEX uq_licenses_current")
