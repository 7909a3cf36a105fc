"""A tenant's history: its audit records joined with its stack's update history.

Each stack update names the operation it was made for (``operation_id`` in its details)
when the update's record names one of the tenant's operations; an update made by hand, or
one whose record names anything else, names none.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select

from api.auth.dependencies import TenantContext
from api.db.models import AuditRecord, Operation, Tenant
from api.stacks.driver import StackUpdate, TenantRef
from api.tenants.schemas import HistoryEntry, TenantHistory

MAX_AUDIT_ENTRIES = 500


def _audit_entries(ctx: TenantContext) -> list[HistoryEntry]:
    query = (
        select(AuditRecord)
        .where(AuditRecord.tenant_id == ctx.tenant_id)
        .order_by(AuditRecord.id.desc())
        .limit(MAX_AUDIT_ENTRIES)
    )
    return [
        HistoryEntry(at=r.occurred_at, source="audit", action=r.action, actor=r.actor, result=r.result,
                     details={"resource": r.resource, "request_id": r.request_id, **r.details})
        for r in ctx.db.scalars(query)
    ]


def _stack_entries(ctx: TenantContext, ref: TenantRef) -> list[HistoryEntry]:
    """HOOK: the automation layer's stack history (``StackDriver.history``)."""
    updates = ctx.services.driver.history(ref)
    operations = _tenants_operations(ctx, (u.operation_id for u in updates))
    return [
        HistoryEntry(at=u.started_at, source="stack", action=f"stack.{u.kind}", result=u.result,
                     details={"stack": u.stack, "version": u.version, "message": u.message, "resource_changes": u.resource_changes,
                              "ended_at": u.ended_at.isoformat() if u.ended_at else None,
                              "operation_id": _named(u, operations)})
        for u in updates
    ]


def _tenants_operations(ctx: TenantContext, named: Iterable[str | None]) -> set[uuid.UUID]:
    """Those of the ids named that are ids of the tenant's operations."""
    ids = {_uuid(value) for value in named} - {None}
    if not ids:
        return set()
    with ctx.db.begin():
        return set(ctx.db.scalars(select(Operation.id).where(Operation.tenant_id == ctx.tenant_id, Operation.id.in_(ids))))


def _named(update: StackUpdate, operations: set[uuid.UUID]) -> str | None:
    operation_id = _uuid(update.operation_id)
    return str(operation_id) if operation_id in operations else None


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value or "")
    except ValueError:
        return None


def tenant_history(ctx: TenantContext) -> TenantHistory:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        ref = TenantRef(id=tenant.id, slug=tenant.slug, placement=tenant.placement)
        entries = _audit_entries(ctx)
    error = None
    try:
        entries += _stack_entries(ctx, ref)
    except Exception as exc:  # the audit half is still worth returning
        error = f"{type(exc).__name__}: {exc}"
    entries.sort(key=lambda e: e.at, reverse=True)
    return TenantHistory(tenant_id=ctx.tenant_id, entries=entries, stack_history_error=error)
