"""A tenant's history: its audit records joined with its stack's update history."""

from __future__ import annotations

from sqlalchemy import select

from api.auth.dependencies import TenantContext
from api.db.models import AuditRecord, Tenant
from api.stacks.driver import TenantRef
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
    return [
        HistoryEntry(at=u.started_at, source="stack", action=f"stack.{u.kind}", result=u.result,
                     details={"stack": u.stack, "version": u.version, "message": u.message, "resource_changes": u.resource_changes,
                              "ended_at": u.ended_at.isoformat() if u.ended_at else None})
        for u in ctx.services.driver.history(ref)
    ]


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
