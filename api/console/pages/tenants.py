"""The tenants list and a tenant's page."""

from __future__ import annotations

import enum
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from api.billing.router import billing_summary
from api.console.access import tenant_scope
from api.console.deps import ConsoleViewer
from api.console.quota import QuotaUnavailable, quota_use
from api.console.session import PATH
from api.console.tenant_list import DriftState, LastResult, TenantFilters, tenant_page
from api.console.templating import render
from api.db.models import Cluster, DriftFinding, Operation, Tenant, TenantStatus
from api.db.session import Scope
from api.dependencies import ServicesDep
from api.licensing.issue import current_license
from api.licensing.verify import license_period
from api.problems import Problem
from components.catalog import TIERS

router = APIRouter(prefix=f"{PATH}/tenants")


@router.get("")
def tenants(
    request: Request, viewer: ConsoleViewer, services: ServicesDep,
    q: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    tier: Annotated[str, Query(max_length=32)] = "",
    cluster: Annotated[str, Query(max_length=63)] = "",
    drift: Annotated[str, Query(max_length=16)] = "",
    last: Annotated[str, Query(max_length=16)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
):
    """A filter form's empty choice ("any") arrives as an empty parameter: no filter."""
    filters = TenantFilters(q.strip(), _choice(TenantStatus, status), tier or None, cluster or None,
                            _choice(DriftState, drift), _choice(LastResult, last), page)
    visible = None if viewer.sees_every_tenant else viewer.administers()
    with services.db.session(Scope.system()) as db, db.begin():
        listing = tenant_page(db, filters, visible)
        clusters = list(db.scalars(select(Cluster.name).order_by(Cluster.name))) if viewer.sees_every_tenant else []
    return render(request, viewer, "tenants.html", area="tenants", listing=listing, filters=filters,
                  statuses=list(TenantStatus), tiers=list(TIERS), clusters=clusters,
                  drift_states=list(DriftState), last_results=list(LastResult))


@router.get("/{tenant_id}")
def tenant(request: Request, tenant_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep):
    with tenant_scope(request, viewer, services, tenant_id) as ctx:
        with ctx.db.begin():
            found = ctx.db.get(Tenant, tenant_id)
            operations = list(ctx.db.scalars(select(Operation).where(Operation.tenant_id == tenant_id)
                                             .order_by(Operation.created_at.desc()).limit(20)))
            license_row = current_license(ctx.db, tenant_id)
            drift = ctx.db.scalar(select(DriftFinding).where(DriftFinding.tenant_id == tenant_id,
                                                            DriftFinding.cleared_at.is_(None)))
        billing = billing_summary(ctx)
    return render(request, viewer, "tenant.html", area="tenants", tenant=found, operations=operations,
                  license=_license_view(services, license_row), billing=billing, drift=drift,
                  environments=TIERS[found.tier].standard_environments if found.tier in TIERS else (),
                  quota=_quota_view(found))


def _choice(options: type[enum.StrEnum], value: str):
    if not value:
        return None
    try:
        return options(value)
    except ValueError:
        raise Problem(422, "validation-error", f"{value!r} is not one of {', '.join(o.value for o in options)}.") from None


def _license_view(services, row) -> dict | None:
    if row is None:
        return None
    grace = timedelta(days=services.settings.license_expiry_grace_days)
    return {"row": row, "state": license_period(row.expires_at, services.clock(), grace), "grace_until": row.expires_at + grace}


def _quota_view(tenant: Tenant) -> dict:
    kind, _, cluster = tenant.placement.partition(":")
    if not cluster or tenant.status not in (TenantStatus.ACTIVE, TenantStatus.SUSPENDED):
        return {"cluster": cluster or None, "lines": [], "error": None if cluster else "not placed on a cluster yet"}
    try:
        return {"cluster": cluster, "lines": quota_use(tenant.slug, cluster), "error": None}
    except QuotaUnavailable as exc:
        return {"cluster": cluster, "lines": [], "error": str(exc)}
