"""Billing: the synced Stripe catalog, webhook events handled once, usage samples and hourly
aggregates, the tenant's subscription state, and operations that wait for a payment.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Written out rather than read from the models, so that this revision means the same thing
# whatever the models say later.
OPERATION_STATUSES_BEFORE = ("PENDING", "RUNNING", "AWAITING_CONFIRMATION", "SUCCEEDED", "FAILED")
OPERATION_STATUSES = ("PENDING", "RUNNING", "AWAITING_CONFIRMATION", "AWAITING_PAYMENT", "SUCCEEDED", "FAILED")
UNFINISHED_BEFORE = ("PENDING", "RUNNING", "AWAITING_CONFIRMATION")
UNFINISHED = ("PENDING", "RUNNING", "AWAITING_CONFIRMATION", "AWAITING_PAYMENT")
TENANT_TABLES = ("usage_samples", "usage_hours", "billing_events")


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _operation_statuses(statuses: tuple[str, ...], unfinished: tuple[str, ...]) -> None:
    op.drop_constraint("ck_operations_status", "operations", type_="check")
    op.create_check_constraint("ck_operations_status", "operations", f"status IN ({_listed(statuses)})")
    op.drop_index("uq_operations_one_unfinished_per_tenant", table_name="operations")
    op.create_index(
        "uq_operations_one_unfinished_per_tenant", "operations", ["tenant_id"], unique=True,
        postgresql_where=sa.text(f"status IN ({_listed(unfinished)})"),
    )


def upgrade(app_role: str) -> None:
    _operation_statuses(OPERATION_STATUSES, UNFINISHED)
    for column in (
        sa.Column("billing_status", sa.String(24), nullable=True),
        sa.Column("billing_status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("billing_hold", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("usage_overage_at", sa.DateTime(timezone=True), nullable=True),
    ):
        op.add_column("tenants", column)
    op.create_index("uq_tenants_billing_customer", "tenants", ["billing_customer_id"], unique=True)

    op.create_table(
        "billing_catalog",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stripe_id", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "billing_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("event_type", sa.String(80), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
    )
    op.create_table(
        "usage_samples",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("tenant_id", sa.UUID(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("dimension", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("sample_key", sa.String(120), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric(24, 9), nullable=False),
        sa.UniqueConstraint("tenant_id", "dimension", "source", "sample_key"),
    )
    op.create_index("ix_usage_samples_hour", "usage_samples", ["hour", "tenant_id", "dimension"])
    op.create_table(
        "usage_hours",
        sa.Column("tenant_id", sa.UUID(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("dimension", sa.String(32), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Numeric(24, 9), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("aggregated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identifier", sa.String(100), nullable=False, unique=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_value", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "dimension", "hour"),
    )

    app = _quote(app_role)
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON billing_catalog, usage_hours TO {app}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON billing_events TO {app}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON usage_samples TO {app}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE usage_samples_id_seq TO {app}")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table}"
            " USING (app_rls_allows(tenant_id)) WITH CHECK (app_rls_allows(tenant_id))"
        )


def downgrade(app_role: str) -> None:
    for table in reversed(TENANT_TABLES):
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
    op.drop_table("usage_hours")
    op.drop_index("ix_usage_samples_hour", table_name="usage_samples")
    op.drop_table("usage_samples")
    op.drop_table("billing_events")
    op.drop_table("billing_catalog")
    op.drop_index("uq_tenants_billing_customer", table_name="tenants")
    for column in ("usage_overage_at", "cancel_at_period_end", "billing_hold", "payment_failed_at",
                   "billing_status_at", "billing_status"):
        op.drop_column("tenants", column)
    op.execute("DELETE FROM operations WHERE status = 'AWAITING_PAYMENT'")
    _operation_statuses(OPERATION_STATUSES_BEFORE, UNFINISHED_BEFORE)
