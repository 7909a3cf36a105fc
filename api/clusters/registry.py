"""The cluster registry: register, change, cordon, drain and remove the clusters tenants are
placed on. The API (router.py) and the operator CLI (cli.py) both call these functions, in
a system-scope transaction of the caller's; each change is audited through ``audit``.

A cluster's kubeconfig goes to OpenBao (credentials.py) before its row is written; the row,
the responses and the audit records hold only the reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from components.catalog import CatalogError, parse_cpu, parse_memory

from api.clusters import kubeconfig
from api.clusters.credentials import ClusterCredentials, reference
from api.db.models import CLUSTER_NAME_PATTERN, Cluster, ClusterKind, ClusterState, Tenant, TenantStatus
from api.problems import Problem, not_found

# (action, resource, **details): appends an audit record in the caller's transaction.
Audit = Callable[..., None]

_NAME = re.compile(CLUSTER_NAME_PATTERN)
_STATE_ACTIONS = {
    ClusterState.ACTIVE: "cluster.uncordoned",
    ClusterState.CORDONED: "cluster.cordoned",
    ClusterState.DRAINING: "cluster.draining",
}


def invalid(detail: str) -> Problem:
    return Problem(422, "invalid-cluster", detail)


def checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise invalid(f"cluster name {name!r} must be 3-32 lower-case letters, digits and '-', "
                      "starting with a letter and not ending with '-'")
    return name


@dataclass(frozen=True)
class Declared:
    """What an operator declares about a cluster: the values an idempotent register compares."""

    kind: str
    region: str
    capacity_cpu_m: int
    capacity_memory_mi: int
    tenant_slots: int

    @classmethod
    def of(cls, kind: str, region: str, cpu: str, memory: str, tenant_slots: int | None) -> Declared:
        if kind not in {k.value for k in ClusterKind}:
            raise invalid(f"kind {kind!r} is neither shared nor dedicated")
        if kind == ClusterKind.DEDICATED and tenant_slots not in (None, 1):
            raise invalid("a dedicated cluster has exactly one tenant slot")
        if tenant_slots is None and kind == ClusterKind.SHARED:
            raise invalid("a shared cluster needs its number of tenant slots")
        declared = cls(kind, checked_region(region), _millicores(cpu), _mebibytes(memory), tenant_slots or 1)
        _check_capacity(declared.capacity_cpu_m, declared.capacity_memory_mi, declared.tenant_slots)
        return declared

    def differences(self, cluster: Cluster) -> list[str]:
        return [field for field, value in asdict(self).items() if getattr(cluster, field) != value]


def checked_region(region: str) -> str:
    if not region or len(region) > 64 or not region.isprintable():
        raise invalid("the region is 1-64 printable characters")
    return region


def _millicores(cpu: str) -> int:
    try:
        return parse_cpu(cpu)
    except CatalogError as exc:
        raise invalid(str(exc)) from None


def _mebibytes(memory: str) -> int:
    try:
        return parse_memory(memory)
    except CatalogError as exc:
        raise invalid(str(exc)) from None


def _check_capacity(cpu_m: int, memory_mi: int, tenant_slots: int) -> None:
    if cpu_m <= 0 or memory_mi <= 0 or tenant_slots <= 0:
        raise invalid("CPU, memory and tenant slots must be positive")


# -- reading ------------------------------------------------------------------------------


def tenants_on(session: Session, cluster_name: str) -> list[Tenant]:
    """The tenants placed on a cluster (``shared:<name>`` or ``dedicated:<name>``), deleted ones excepted."""
    return list(session.scalars(
        select(Tenant)
        .where(Tenant.placement.endswith(f":{cluster_name}", autoescape=True),
               Tenant.status != TenantStatus.DELETED.value)
        .order_by(Tenant.slug)
    ))


def tenant_counts(session: Session) -> dict[str, int]:
    """How many tenants (deleted ones excepted) each cluster name holds."""
    cluster = func.split_part(Tenant.placement, ":", 2)
    rows = session.execute(
        select(cluster, func.count()).where(Tenant.status != TenantStatus.DELETED.value).group_by(cluster))
    return dict(rows.all())


def all_clusters(session: Session) -> list[Cluster]:
    return list(session.scalars(select(Cluster).order_by(Cluster.name)))


def get(session: Session, name: str, *, for_update: bool = False) -> Cluster:
    query = select(Cluster).where(Cluster.name == name)
    cluster = session.scalar(query.with_for_update() if for_update else query)
    if cluster is None:
        raise not_found(f"Cluster {name!r}")
    return cluster


# -- changes ------------------------------------------------------------------------------


def register(session: Session, credentials: ClusterCredentials, audit: Audit, name: str, declared: Declared,
             kubeconfig_content: str, *, verify: bool = True) -> tuple[Cluster, bool]:
    """The cluster, and whether it is new. The same name with the same declared values is the
    existing cluster (its kubeconfig rewritten when it changed: a credential rotation)."""
    checked_name(name)
    document = kubeconfig.parse(kubeconfig_content)
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"cluster:{name}"})
    existing = session.scalar(select(Cluster).where(Cluster.name == name).with_for_update())
    if existing is not None:
        _same_declaration(existing, declared)
        if credentials.read(existing.credentials_ref) != kubeconfig_content:
            if verify:
                kubeconfig.verify(document)
            credentials.write(existing.credentials_ref, kubeconfig_content)
            audit("cluster.credentials_rotated", f"cluster:{name}", credentials_ref=existing.credentials_ref,
                  verified=verify)
        return existing, False
    if verify:
        kubeconfig.verify(document)
    ref = reference(name)
    credentials.write(ref, kubeconfig_content)
    cluster = Cluster(name=name, **asdict(declared), state=ClusterState.ACTIVE.value, credentials_ref=ref,
                      baseline_stack=f"shared-{name}" if declared.kind == ClusterKind.SHARED else None)
    session.add(cluster)
    session.flush()
    audit("cluster.registered", f"cluster:{name}", **asdict(declared), credentials_ref=ref, verified=verify)
    return cluster, True


def _same_declaration(cluster: Cluster, declared: Declared) -> None:
    differing = declared.differences(cluster)
    if "kind" in differing:
        raise Problem(409, "cluster-conflict", f"cluster {cluster.name!r} is registered as {cluster.kind}, "
                      f"not {declared.kind}; remove it first to register it again", fields=differing)
    if differing:
        raise Problem(409, "cluster-conflict", f"cluster {cluster.name!r} is registered with another "
                      f"{', '.join(differing)}; change it with PATCH /v1/clusters/{cluster.name} "
                      "(or `cameleer-clusters set-capacity`)", fields=differing)


def update(session: Session, audit: Audit, name: str, *, region: str | None = None, cpu: str | None = None,
           memory: str | None = None, tenant_slots: int | None = None) -> Cluster:
    """Change the region or capacity; values left out keep theirs."""
    cluster = get(session, name, for_update=True)
    wanted = {
        "region": checked_region(region) if region is not None else cluster.region,
        "capacity_cpu_m": _millicores(cpu) if cpu is not None else cluster.capacity_cpu_m,
        "capacity_memory_mi": _mebibytes(memory) if memory is not None else cluster.capacity_memory_mi,
        "tenant_slots": tenant_slots if tenant_slots is not None else cluster.tenant_slots,
    }
    _check_capacity(wanted["capacity_cpu_m"], wanted["capacity_memory_mi"], wanted["tenant_slots"])
    if cluster.kind == ClusterKind.DEDICATED and wanted["tenant_slots"] != 1:
        raise invalid("a dedicated cluster has exactly one tenant slot")
    changes = {field: [getattr(cluster, field), value] for field, value in wanted.items()
               if getattr(cluster, field) != value}
    if changes:
        for field, (_, value) in changes.items():
            setattr(cluster, field, value)
        session.flush()
        audit("cluster.capacity_changed", f"cluster:{name}", changes=changes)
    return cluster


def set_state(session: Session, audit: Audit, name: str, state: ClusterState) -> Cluster:
    """Cordon (no new tenant), drain (no new tenant; the ones there are to move) or uncordon."""
    cluster = get(session, name, for_update=True)
    if cluster.state != state:
        previous, cluster.state = cluster.state, state.value
        session.flush()
        audit(_STATE_ACTIONS[state], f"cluster:{name}", previous=previous)
    return cluster


def remove(session: Session, credentials: ClusterCredentials, audit: Audit, name: str) -> None:
    """Delete the cluster and its kubeconfig; refused while a tenant lives there."""
    cluster = get(session, name, for_update=True)
    remaining = tenants_on(session, name)
    if remaining:
        raise Problem(409, "cluster-not-empty", f"cluster {name!r} still holds {len(remaining)} tenant(s); "
                      "move or delete them first (drain lists them)", tenants=len(remaining))
    session.delete(cluster)
    session.flush()
    credentials.delete(cluster.credentials_ref)
    audit("cluster.removed", f"cluster:{name}", kind=cluster.kind, credentials_ref=cluster.credentials_ref)

