"""Operations that wait for cluster capacity: a signup or a move for which no registered
cluster has room waits in AWAITING_CAPACITY until one has (api/clusters/assign.py); a
dedicated placement names its cluster.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Written out rather than read from the models (see 0004).
OPERATION_STATUSES_BEFORE = ("PENDING", "RUNNING", "AWAITING_CONFIRMATION", "AWAITING_PAYMENT", "SUCCEEDED", "FAILED")
OPERATION_STATUSES = OPERATION_STATUSES_BEFORE + ("AWAITING_CAPACITY",)
UNFINISHED_BEFORE = ("PENDING", "RUNNING", "AWAITING_CONFIRMATION", "AWAITING_PAYMENT")
UNFINISHED = UNFINISHED_BEFORE + ("AWAITING_CAPACITY",)


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
    # A dedicated placement named the tenant (`dedicated:<slug>`) and its stack ran on the
    # local cluster, eu1; it now names the cluster.
    op.execute("UPDATE tenants SET placement = 'dedicated:eu1' WHERE placement LIKE 'dedicated:%'")


def downgrade(app_role: str) -> None:
    op.execute("UPDATE operations SET status = 'PENDING' WHERE status = 'AWAITING_CAPACITY'")
    _operation_statuses(OPERATION_STATUSES_BEFORE, UNFINISHED_BEFORE)
