"""Drift findings of the watcher (cameleer drift watch, api.drift): one open row per drifted stack.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "drift_findings",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("stack", sa.String(128), nullable=False, index=True),
        sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True),
        sa.Column("findings", JSONB(), nullable=False, server_default="[]"),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("cleared_at", sa.DateTime(timezone=True)),
        sa.Column("correction_operation_id", sa.Uuid(), sa.ForeignKey("operations.id")),
    )
    # At most one open finding per stack, whatever the writers do.
    op.create_index("uq_drift_findings_open_per_stack", "drift_findings", ["stack"], unique=True,
                    postgresql_where=sa.text("cleared_at IS NULL"))
    app = _quote(app_role)
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON drift_findings TO {app}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE drift_findings_id_seq TO {app}")
    op.execute("ALTER TABLE drift_findings ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE drift_findings FORCE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY tenant_isolation ON drift_findings"
               " USING (app_rls_allows(tenant_id)) WITH CHECK (app_rls_allows(tenant_id))")


def downgrade(app_role: str) -> None:
    op.execute("DROP POLICY tenant_isolation ON drift_findings")
    op.drop_table("drift_findings")
