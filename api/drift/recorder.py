"""The drift watcher's findings, into the platform: a finding row, an audit record, and, where
the tenant's tier says so, a correction through the operation queue.

`DriftRecorder` is a `WatchSink` (automation/watch.py). For each `drifted` event it keeps
one open `drift_findings` row per stack (the property paths found, never values) and audits
`drift.detected`; a `cleared` event closes the row and audits `drift.cleared`. A tenant whose
tier corrects automatically (components/catalog.py `drift_correction`) gets a
`drift_correction` operation, queued like any lifecycle operation, at most once per tenant
per `correction_interval` seconds, never while another operation of the tenant is unfinished,
and only while the tenant is ACTIVE; every decision is audited.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from api.audit.chain import AuditMeta, append
from api.db.models import DriftFinding, Operation, OperationKind, Tenant, TenantStatus
from api.db.session import Scope, ScopedSession
from api.operations.service import start_operation, unfinished_operation
from api.services import Services
from api.tiers import tier_named
from automation.errors import OperationError
from automation.naming import TENANT_KINDS, parse_stack_name
from automation.watch import WatchEvent
from components.catalog import DriftCorrection

log = logging.getLogger(__name__)

ACTOR = "system:drift-watch"


class DriftRecorder:
    def __init__(self, services: Services, *, correction_interval: float = 600.0) -> None:
        self.services = services
        self.correction_interval = timedelta(seconds=correction_interval)
        self.meta = AuditMeta(actor=ACTOR)

    def __call__(self, event: WatchEvent) -> None:
        try:
            if event.event == "drifted":
                self.drifted(event.stack, [f.to_dict() for f in event.findings], event.at)
            elif event.event == "cleared":
                self.cleared(event.stack, event.at)
        except Exception:  # noqa: BLE001 - one failed write must not stop the watch
            log.exception("recording the drift event %s of %s failed", event.event, event.stack)

    def drifted(self, stack: str, findings: list[dict[str, Any]], at: datetime) -> DriftFinding:
        with self.services.db.transaction(Scope.system()) as session:
            tenant = _tenant_of(session, stack)
            tenant_id = tenant.id if tenant else None
            row = _open_finding(session, stack)
            if row is None:
                row = DriftFinding(stack=stack, tenant_id=tenant_id, findings=findings, detected_at=at, updated_at=at)
                session.add(row)
            else:
                row.findings, row.updated_at = findings, at
            session.flush()
            append(session, self.meta, "drift.detected", f"stack:{stack}", tenant_id=tenant_id,
                   details={"finding": row.id, "findings": findings})
            if tenant is not None:
                self._maybe_correct(session, tenant, row, at)
            return row

    def cleared(self, stack: str, at: datetime) -> None:
        with self.services.db.transaction(Scope.system()) as session:
            row = _open_finding(session, stack)
            if row is None:
                return
            row.cleared_at = at
            append(session, self.meta, "drift.cleared", f"stack:{stack}", tenant_id=row.tenant_id,
                   details={"finding": row.id, "correction_operation_id": _text(row.correction_operation_id)})

    def _maybe_correct(self, session: ScopedSession, tenant: Tenant, row: DriftFinding, at: datetime) -> None:
        reason = self._why_not_correct(session, tenant, at)
        if reason is not None:
            append(session, self.meta, "drift.correction_skipped", f"tenant:{tenant.id}", tenant_id=tenant.id,
                   details={"finding": row.id, "reason": reason})
            return
        bucket = int(at.timestamp() // self.correction_interval.total_seconds())
        operation = start_operation(
            session, kind=OperationKind.DRIFT_CORRECTION, tenant_id=tenant.id,
            key=f"drift-correction:{tenant.id}:{bucket}",
            request_fingerprint=self.services.fingerprints.of({"finding": row.id, "stack": row.stack}),
            requested_by=ACTOR, params={"finding": row.id}, queue=self.services.settings.job_queue,
        )
        row.correction_operation_id = operation.id
        append(session, self.meta, "drift.correction_requested", f"tenant:{tenant.id}", tenant_id=tenant.id,
               details={"finding": row.id, "operation_id": str(operation.id)})

    def _why_not_correct(self, session: ScopedSession, tenant: Tenant, at: datetime) -> str | None:
        if tier_named(tenant.tier).drift_correction is not DriftCorrection.AUTO:
            return f"the {tenant.tier} tier reports drift only; an operator corrects it"
        if tenant.status != TenantStatus.ACTIVE:
            return f"the tenant is {tenant.status}"
        if (busy := unfinished_operation(session, tenant.id)) is not None:
            return f"operation {busy.id} ({busy.kind}) is unfinished"
        last = session.scalar(select(Operation.created_at).where(
            Operation.tenant_id == tenant.id, Operation.kind == OperationKind.DRIFT_CORRECTION.value,
        ).order_by(Operation.created_at.desc()).limit(1))
        if last is not None and at - last < self.correction_interval:
            return (f"corrected {int((at - last).total_seconds())}s ago; at most one correction per "
                    f"{int(self.correction_interval.total_seconds())}s")
        return None


def _tenant_of(session: ScopedSession, stack: str) -> Tenant | None:
    """The tenant a tenant-<slug> or dedicated-<slug> stack serves; None for the others."""
    try:
        ref = parse_stack_name(stack)
    except OperationError:
        return None
    if ref.kind not in TENANT_KINDS:
        return None
    return session.scalar(select(Tenant).where(Tenant.slug == ref.slug))


def _open_finding(session: ScopedSession, stack: str) -> DriftFinding | None:
    return session.scalar(select(DriftFinding).where(DriftFinding.stack == stack, DriftFinding.cleared_at.is_(None))
                          .with_for_update())


def _text(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None

