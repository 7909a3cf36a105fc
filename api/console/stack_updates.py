"""A tenant's stack updates as the console shows them, and what is known of one update's diff.

The list is the API's own history (``api.tenants.history.tenant_history``); who and why are
read back from each update's ``[cameleer]`` message (automation/history.py), and the
operation it was made for is the one the history names (one of the tenant's). The state
backend keeps, per update, only counts of resource changes, so the per-resource diff of an
update comes from the engine events its operation recorded (``stack_events``: per resource
its step and the paths the engine reported as changed, never values). An update that names
no operation is tied to one by time: the operation whose events were recorded while it ran.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select

from api.auth.dependencies import TenantContext
from api.db.models import Operation, StackEvent
from api.tenants.history import tenant_history
from automation.history import UpdateMetadata

# Engine events are stored as they arrive; an update's recorded times are whole seconds.
TIME_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class StackUpdateView:
    version: int
    kind: str
    result: str
    started_at: datetime
    ended_at: datetime | None
    actor: str | None
    reason: str | None
    change_kind: str | None
    operation_id: uuid.UUID | None  # the tenant's operation the update was made for, as the history names it
    message: str
    resource_changes: dict[str, int]
    operation_kind: str | None = None

    @property
    def changed(self) -> int:
        return sum(n for op, n in self.resource_changes.items() if op != "same")


@dataclass
class ResourceDiff:
    urn: str
    type: str | None
    op: str | None
    failed: bool = False
    properties: dict[str, str] = field(default_factory=dict)  # path -> add | update | delete | ...

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class UpdateDiff:
    operation: Operation | None
    matched_by: str | None  # "message" or "time"; None when no operation's events match
    resources: list[ResourceDiff]


def stack_updates(ctx: TenantContext) -> tuple[list[StackUpdateView], str | None]:
    """The tenant's stack updates, newest first, and why the stack's half is missing, if it is."""
    history = tenant_history(ctx)
    entries = [e for e in history.entries if e.source == "stack"]
    views = [_view(entry, len(entries) - index) for index, entry in enumerate(entries)]
    kinds = _operation_kinds(ctx, {v.operation_id for v in views} - {None})
    return [replace(v, operation_kind=kinds.get(v.operation_id)) for v in views], history.stack_history_error


def _operation_kinds(ctx: TenantContext, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    with ctx.db.begin():
        rows = ctx.db.execute(select(Operation.id, Operation.kind).where(Operation.tenant_id == ctx.tenant_id,
                                                                        Operation.id.in_(ids)))
        return {operation_id: kind for operation_id, kind in rows}


def _view(entry, position: int) -> StackUpdateView:
    details = entry.details
    meta = UpdateMetadata.parse(details.get("message"))
    return StackUpdateView(
        version=details.get("version") or position,
        kind=entry.action.removeprefix("stack."),
        result=entry.result,
        started_at=entry.at,
        ended_at=datetime.fromisoformat(details["ended_at"]) if details.get("ended_at") else None,
        actor=meta.actor if meta else None,
        reason=meta.reason if meta else None,
        change_kind=meta.kind if meta else None,
        operation_id=uuid.UUID(details["operation_id"]) if details.get("operation_id") else None,
        message=details.get("message") or "",
        resource_changes=dict(details.get("resource_changes") or {}),
    )


def update_diff(ctx: TenantContext, update: StackUpdateView) -> UpdateDiff:
    with ctx.db.begin():
        operation, matched_by = _named_operation(ctx, update), "message"
        if operation is None:
            operation, matched_by = _operation_by_time(ctx, update), "time"
        if operation is None:
            return UpdateDiff(None, None, [])
        events = ctx.db.scalars(select(StackEvent).where(StackEvent.operation_id == operation.id, *_during(update))
                                .order_by(StackEvent.id))
        return UpdateDiff(operation, matched_by, _resources(events))


def _named_operation(ctx: TenantContext, update: StackUpdateView) -> Operation | None:
    operation = ctx.db.get(Operation, update.operation_id) if update.operation_id else None
    return operation if operation is not None and operation.tenant_id == ctx.tenant_id else None


def _operation_by_time(ctx: TenantContext, update: StackUpdateView) -> Operation | None:
    """The operation with the most events recorded while the update ran."""
    query = (select(StackEvent.operation_id).where(StackEvent.tenant_id == ctx.tenant_id, *_during(update))
             .group_by(StackEvent.operation_id).order_by(func.count().desc()).limit(1))
    operation_id = ctx.db.scalar(query)
    return ctx.db.get(Operation, operation_id) if operation_id else None


def _during(update: StackUpdateView) -> tuple:
    end = (update.ended_at or update.started_at) + TIME_SLACK
    return StackEvent.created_at >= update.started_at - TIME_SLACK, StackEvent.created_at <= end


def _resources(events) -> list[ResourceDiff]:
    """One row per resource the engine touched (``same`` ones left out), in the engine's order."""
    resources: dict[str, ResourceDiff] = {}
    for event in events:
        payload = event.payload
        urn = payload.get("urn") if isinstance(payload, dict) else None
        if not urn:
            continue
        resource = resources.setdefault(urn, ResourceDiff(urn, payload.get("resource_type"), payload.get("op")))
        resource.op = payload.get("op") or resource.op
        resource.failed = resource.failed or payload.get("type") == "resource-failed"
        data = payload.get("data") or {}
        detailed = data.get("detailed_diff") or {}
        for path in data.get("diffs") or ():
            resource.properties.setdefault(str(path), "update")
        resource.properties.update({str(path): str(kind) for path, kind in detailed.items()})
    return [r for r in resources.values() if r.op not in (None, "same", "read", "refresh") or r.failed or r.properties]
