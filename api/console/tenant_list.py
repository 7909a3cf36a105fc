"""The tenants list: one query with the viewer's filters, a page at a time.

Each row carries the tenant's last operation (kind, status, when) and whether the drift
watcher has an open finding for it, so the page needs no query per row.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import Select, exists, func, or_, select, true
from sqlalchemy.orm import Session

from api.db.models import DriftFinding, Operation, OperationStatus, Tenant

PAGE_SIZE = 50


class DriftState(enum.StrEnum):
    DRIFTED = "drifted"
    CLEAN = "clean"


class LastResult(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNFINISHED = "unfinished"


@dataclass(frozen=True)
class TenantFilters:
    search: str = ""
    status: str | None = None
    tier: str | None = None
    cluster: str | None = None
    drift: DriftState | None = None
    last_result: LastResult | None = None
    page: int = 1

    def query_string(self, **changes) -> str:
        """The filters as URL parameters (for pagination links), with ``changes`` applied."""
        values = {"q": self.search, "status": self.status, "tier": self.tier, "cluster": self.cluster,
                  "drift": self.drift, "last": self.last_result, "page": self.page} | changes
        return urlencode({k: str(v) for k, v in values.items() if v not in (None, "") and not (k == "page" and v == 1)})


@dataclass(frozen=True)
class TenantRow:
    id: uuid.UUID
    slug: str
    name: str
    tier: str
    status: str
    placement: str
    created_at: datetime
    drifted: bool
    last_kind: str | None
    last_status: str | None
    last_at: datetime | None

    @property
    def cluster(self) -> str | None:
        kind, _, cluster = self.placement.partition(":")
        return cluster or None


@dataclass(frozen=True)
class TenantPage:
    rows: list[TenantRow]
    total: int
    filters: TenantFilters
    page_size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def tenant_page(db: Session, filters: TenantFilters, visible: list[uuid.UUID] | None) -> TenantPage:
    """``visible`` None: every tenant (platform readers); else only those ids."""
    last = (
        select(Operation.kind, Operation.status, Operation.created_at)
        .where(Operation.tenant_id == Tenant.id)
        .order_by(Operation.created_at.desc())
        .limit(1)
        .lateral("last_operation")
    )
    drifted = exists().where(DriftFinding.tenant_id == Tenant.id, DriftFinding.cleared_at.is_(None))
    query = (
        select(Tenant.id, Tenant.slug, Tenant.name, Tenant.tier, Tenant.status, Tenant.placement, Tenant.created_at,
               drifted.label("drifted"), last.c.kind, last.c.status, last.c.created_at)
        .outerjoin(last, true())
    )
    query = _filtered(query, filters, visible, drifted, last)
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    page = max(1, filters.page)
    rows = db.execute(query.order_by(Tenant.created_at.desc(), Tenant.id)
                      .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    return TenantPage([TenantRow(*row) for row in rows], total, filters)


def _filtered(query: Select, filters: TenantFilters, visible, drifted, last) -> Select:
    if visible is not None:
        query = query.where(Tenant.id.in_(visible))
    if filters.search:
        pattern = "%" + filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Tenant.slug.ilike(pattern), Tenant.name.ilike(pattern)))
    if filters.status:
        query = query.where(Tenant.status == filters.status)
    if filters.tier:
        query = query.where(Tenant.tier == filters.tier)
    if filters.cluster:
        query = query.where(Tenant.placement.like("%:" + filters.cluster.replace("%", "")))
    if filters.drift is DriftState.DRIFTED:
        query = query.where(drifted)
    elif filters.drift is DriftState.CLEAN:
        query = query.where(~drifted)
    if filters.last_result is LastResult.SUCCEEDED:
        query = query.where(last.c.status == OperationStatus.SUCCEEDED.value)
    elif filters.last_result is LastResult.FAILED:
        query = query.where(last.c.status == OperationStatus.FAILED.value)
    elif filters.last_result is LastResult.UNFINISHED:
        query = query.where(last.c.status.not_in([OperationStatus.SUCCEEDED.value, OperationStatus.FAILED.value]))
    return query
