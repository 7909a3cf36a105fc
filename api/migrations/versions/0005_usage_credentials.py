"""Usage-report credentials: one per tenant, the HMAC secret its servers sign reports with.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "usage_credentials",
        sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key_id", sa.String(40), nullable=False, unique=True),
        # AES-GCM under the platform secret, the key id bound as associated data.
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON usage_credentials TO {_quote(app_role)}")
    op.execute("ALTER TABLE usage_credentials ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE usage_credentials FORCE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY tenant_isolation ON usage_credentials"
               " USING (app_rls_allows(tenant_id)) WITH CHECK (app_rls_allows(tenant_id))")


def downgrade(app_role: str) -> None:
    op.execute("DROP POLICY tenant_isolation ON usage_credentials")
    op.drop_table("usage_credentials")
