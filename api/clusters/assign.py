"""Placing a tenant: the registry read, the rule applied (api.clusters.placement), the choice
stored, in one transaction.

The clusters of the wanted kind are locked (`FOR UPDATE`, in name order) while their load is
summed and the choice recorded, so two signups placed at once cannot both take the last
slot. A cluster's load counts the tenants placed there (every status but DELETED) and the
unfinished moves headed there, whose tenant still lives elsewhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select, update

from api.clusters.placement import ClusterLoad, NoCluster, choose_cluster
from api.db.models import (
    UNFINISHED_OPERATION_STATUSES,
    Cluster,
    ClusterState,
    Operation,
    OperationKind,
    Tenant,
    TenantStatus,
)
from api.db.session import ScopedSession
from components.catalog import Compute, Placement, get_tier


def placement_of(kind: Placement, cluster: str) -> str:
    """The `Tenant.placement` value of a tenant on `cluster`: `shared:eu1`, `dedicated:dc1`."""
    return f"{kind.value}:{cluster}"


def placed_cluster(placement: str) -> str | None:
    """The cluster of a placement value; None while the tenant waits for one (`shared`)."""
    return placement.partition(":")[2] or None


def place(session: ScopedSession, tier_name: str, slug: str) -> str | NoCluster:
    """Choose the cluster for a new tenant (or a move) of tier `tier_name`, reserve it, and
    answer the placement value; a `NoCluster` when none can take it. Needs the system scope."""
    tier = get_tier(tier_name)
    clusters = _clusters(session, tier.placement, lock=True)
    choice = choose_cluster(cluster_loads(session, clusters), tier.placement, tier.footprint())
    if isinstance(choice, NoCluster):
        return choice
    if tier.placement is Placement.DEDICATED:
        chosen = next(cluster for cluster in clusters if cluster.name == choice)
        chosen.baseline_stack = f"dedicated-{slug}"
    return placement_of(tier.placement, choice)


def release(session: ScopedSession, slug: str, placement: str) -> None:
    """The tenant has left `placement` (deleted, or moved away): a dedicated cluster it held
    takes the next dedicated tenant. A shared cluster's room is counted from its tenants."""
    cluster = placed_cluster(placement)
    if placement.startswith(f"{Placement.DEDICATED.value}:") and cluster:
        session.execute(update(Cluster).where(Cluster.name == cluster, Cluster.baseline_stack == f"dedicated-{slug}")
                        .values(baseline_stack=None))


def loads_of(session: ScopedSession, kind: Placement) -> list[ClusterLoad]:
    """The loads of every cluster of `kind` now (reads, locks nothing)."""
    return cluster_loads(session, _clusters(session, kind, lock=False))


def would_place(loads: Iterable[ClusterLoad], tier_name: str) -> bool:
    """Whether a tenant of `tier_name` would find a cluster among `loads` (reserves nothing)."""
    tier = get_tier(tier_name)
    return not isinstance(choose_cluster(loads, tier.placement, tier.footprint()), NoCluster)


def _clusters(session: ScopedSession, kind: Placement, *, lock: bool) -> list[Cluster]:
    query = select(Cluster).where(Cluster.kind == kind.value).order_by(Cluster.name)
    return list(session.scalars(query.with_for_update() if lock else query).all())


def cluster_loads(session: ScopedSession, clusters: Iterable[Cluster]) -> list[ClusterLoad]:
    used: dict[str, list[Compute]] = defaultdict(list)
    for cluster, tier in _placed_tiers(session):
        used[cluster].append(get_tier(tier).footprint())
    return [_load(cluster, used.get(cluster.name, [])) for cluster in clusters]


def _load(cluster: Cluster, footprints: list[Compute]) -> ClusterLoad:
    kind = Placement(cluster.kind)
    # A dedicated cluster reserved for a tenant (its baseline stack named) is taken even
    # before that tenant's stack exists.
    tenants = max(len(footprints), 1 if kind is Placement.DEDICATED and cluster.baseline_stack else 0)
    return ClusterLoad(
        name=cluster.name, kind=kind, accepts_tenants=cluster.state == ClusterState.ACTIVE.value,
        capacity=Compute(cluster.capacity_cpu_m, cluster.capacity_memory_mi), slots=cluster.tenant_slots,
        used=Compute(sum(f.cpu_m for f in footprints), sum(f.memory_mi for f in footprints)),
        tenants=tenants, state=cluster.state,
    )


def _placed_tiers(session: ScopedSession) -> list[tuple[str, str]]:
    """(cluster, tier) of every tenant placed somewhere, and of every move under way to its target."""
    placed = session.execute(
        select(Tenant.placement, Tenant.tier).where(Tenant.status != TenantStatus.DELETED.value)
    ).all()
    target = Operation.params["placement"].astext
    moving = session.execute(
        select(target, Operation.params["tier"].astext).join(Tenant, Tenant.id == Operation.tenant_id).where(
            Operation.kind == OperationKind.CHANGE_TIER.value,
            Operation.status.in_([status.value for status in UNFINISHED_OPERATION_STATUSES]),
            target != Tenant.placement,
        )
    ).all()
    return [(cluster, tier) for placement, tier in [*placed, *moving]
            if placement and (cluster := placed_cluster(placement))]
