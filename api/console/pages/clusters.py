"""The clusters: capacity, reservations and the tenants placed on each; operators cordon and uncordon.

The figures are ``GET /v1/clusters``'s (``described``); cordon and uncordon are the API's
``registry.set_state``, idempotent and audited the same way.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from api.auth.dependencies import RequestContext
from api.clusters import registry
from api.clusters.assign import placed_cluster
from api.clusters.schemas import described
from api.console.access import require_operator
from api.console.deps import ConsoleViewer, CsrfChecked
from api.console.session import PATH, Viewer
from api.console.templating import render
from api.db.models import ClusterState, Tenant, TenantStatus
from api.db.session import Scope
from api.dependencies import ServicesDep
from api.problems import forbidden, not_found
from api.services import Services
from components.catalog import cpu as cpu_quantity
from components.catalog import memory as memory_quantity

router = APIRouter(prefix=f"{PATH}/clusters")

STATE_CHANGES = {"cordon": ClusterState.CORDONED, "uncordon": ClusterState.ACTIVE}


def _require_reader(viewer: Viewer) -> None:
    if not viewer.sees_every_tenant:
        raise forbidden("The clusters are for the platform roles operator and auditor.")


@router.get("")
def clusters(request: Request, viewer: ConsoleViewer, services: ServicesDep):
    _require_reader(viewer)
    with services.db.session(Scope.system()) as db, db.begin():
        listed = described(db, registry.all_clusters(db))
        placed = _tenants_by_cluster(db)
    return render(request, viewer, "clusters.html", area="clusters", clusters=listed, placed=placed,
                  cpu=_cpu, memory=_memory)


def _cpu(millicores: int) -> str:
    """As cameleer-clusters prints it: ``64``, ``500m`` (a negative free amount shows as 0)."""
    return cpu_quantity(max(millicores, 0))


def _memory(mebibytes: int) -> str:
    return memory_quantity(max(mebibytes, 0))


def _tenants_by_cluster(db) -> dict[str, list]:
    """The tenants on each cluster (deleted ones excepted), by slug: one query for the page."""
    rows = db.execute(select(Tenant.id, Tenant.slug, Tenant.tier, Tenant.status, Tenant.placement)
                      .where(Tenant.status != TenantStatus.DELETED.value).order_by(Tenant.slug))
    placed: dict[str, list] = defaultdict(list)
    for row in rows:
        if cluster := placed_cluster(row.placement):
            placed[cluster].append(row)
    return placed


@router.post("/{name}/{change}", dependencies=[CsrfChecked])
def change_state(request: Request, name: str, change: str, viewer: ConsoleViewer,
                 services: ServicesDep) -> RedirectResponse:
    if change not in STATE_CHANGES:
        raise not_found(f"Cluster action {change!r}")  # drain and removal stay in the API and the CLI
    require_operator(viewer)
    _set_state(request, viewer, services, name, STATE_CHANGES[change])
    return RedirectResponse(f"{PATH}/clusters#cluster-{name}", status_code=303)


def _set_state(request: Request, viewer: Viewer, services: Services, name: str, state: ClusterState) -> None:
    with services.db.session(Scope.system()) as db, db.begin():
        ctx = RequestContext(request, viewer.principal, services, db)
        registry.set_state(db, ctx.audit, name, state)
