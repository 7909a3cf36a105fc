"""Operations waiting for cluster capacity: counted for the alert, and resumed once a cluster
has room for them (checked each minute: after an operator registers, uncordons or enlarges a
cluster, or a tenant leaves one). The resumed operation's `place` step chooses and reserves.
"""

from __future__ import annotations

from sqlalchemy import select

from api.clusters.assign import loads_of, would_place
from api.clusters.placement import ClusterLoad
from api.db.models import Operation, OperationStatus, Tenant
from api.db.session import Scope, ScopedSession
from api.metrics import OPERATIONS_AWAITING_CAPACITY
from api.operations.service import resume_operation
from api.services import Services
from components.catalog import Placement, get_tier


def resume_waiting(session: ScopedSession, *, queue: str) -> int:
    """Put back in the queue every operation waiting for capacity that a cluster could take
    now, in the caller's transaction (the system scope); answers how many."""
    waiting = session.execute(
        select(Operation, Tenant.tier).join(Tenant, Tenant.id == Operation.tenant_id)
        .where(Operation.status == OperationStatus.AWAITING_CAPACITY.value)
        .order_by(Operation.created_at).with_for_update(of=Operation)
    ).all()
    loads: dict[Placement, list[ClusterLoad]] = {}  # read once per kind, not once per operation
    resumed = 0
    for operation, tier_name in waiting:
        tier = get_tier(operation.params.get("tier") or tier_name)
        if tier.placement not in loads:
            loads[tier.placement] = loads_of(session, tier.placement)
        if would_place(loads[tier.placement], tier.name):
            resume_operation(session, operation, queue=queue)
            resumed += 1
    return resumed


def count_waiting(session: ScopedSession) -> dict[str, int]:
    """Operations waiting for capacity, by the kind of cluster they wait for."""
    rows = session.execute(
        select(Operation.params["placement"].astext, Tenant.placement)
        .join(Tenant, Tenant.id == Operation.tenant_id)
        .where(Operation.status == OperationStatus.AWAITING_CAPACITY.value)
    ).all()
    counts = {"shared": 0, "dedicated": 0}
    for target, current in rows:
        kind = (target or current).partition(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def resume_and_report(services: Services) -> int:
    """The minute job: export the waiting counts, then resume the waiting operations."""
    with services.db.transaction(Scope.system()) as session:
        for kind, count in count_waiting(session).items():
            OPERATIONS_AWAITING_CAPACITY.labels(kind).set(count)
        return resume_waiting(session, queue=services.settings.job_queue)
