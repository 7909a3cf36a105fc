"""The cluster registry (api.clusters): name, kind, region, capacity, state, the OpenBao
reference of its kubeconfig and the stack that manages its baseline.

Platform data, like signing_keys: no row-level security. The system role (platform
endpoints, the operator CLI, the workers' placement) reads and writes it; the app role may
only read it (a tenant-scoped step may need its cluster's facts; none is secret).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("capacity_cpu_m", sa.BigInteger(), nullable=False),
        sa.Column("capacity_memory_mi", sa.BigInteger(), nullable=False),
        sa.Column("tenant_slots", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("credentials_ref", sa.String(200), nullable=False),
        sa.Column("baseline_stack", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9-]{1,30}[a-z0-9]$'", name="ck_clusters_name"),
        sa.CheckConstraint("kind IN ('shared', 'dedicated')", name="ck_clusters_kind"),
        sa.CheckConstraint("state IN ('active', 'cordoned', 'draining')", name="ck_clusters_state"),
        sa.CheckConstraint("capacity_cpu_m > 0 AND capacity_memory_mi > 0 AND tenant_slots > 0",
                           name="ck_clusters_capacity"),
        sa.CheckConstraint("kind = 'shared' OR tenant_slots = 1", name="ck_clusters_dedicated_slots"),
    )
    op.execute(f"GRANT SELECT ON clusters TO {_quote(app_role)}")
    system = _quote(context.config.attributes["system_role"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON clusters TO {system}")


def downgrade(app_role: str) -> None:
    op.drop_table("clusters")
