"""An operator's drift correction: a `drift_correction` operation with the reason they gave.

The same operation the drift watcher queues for tenants whose tier corrects automatically
(recorder.py), asked for by a person: idempotent by key like every lifecycle request (the
same key and reason answer the operation already started), refused while the tenant is not
ACTIVE or another of its operations is unfinished, tied to the tenant's open finding, and
audited with the reason.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from api.auth.dependencies import TenantContext
from api.db.models import DriftFinding, Operation, OperationKind, Tenant, TenantStatus
from api.operations.service import find_by_key, replay_or_conflict, start_operation
from api.problems import Problem, not_found

MAX_REASON = 500


def request_correction(ctx: TenantContext, reason: str, idempotency_key: str | None) -> tuple[Tenant, Operation]:
    reason = " ".join(reason.split())
    if not reason:
        raise Problem(422, "reason-required", "A drift correction needs a reason.")
    key = f"tenant:{ctx.tenant_id}:{OperationKind.DRIFT_CORRECTION.value}:{idempotency_key or uuid.uuid4().hex}"
    fingerprint = ctx.services.fingerprints.of({"kind": OperationKind.DRIFT_CORRECTION.value, "reason": reason})
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        if tenant is None:
            raise not_found("Tenant")
        existing = find_by_key(ctx.db, key)
        if existing is not None:
            return tenant, replay_or_conflict(existing, fingerprint)
        if tenant.status != TenantStatus.ACTIVE:
            raise Problem(409, "invalid-state", f"Cannot correct drift of a tenant that is {tenant.status}; it must be ACTIVE.")
        finding = ctx.db.scalar(select(DriftFinding).where(DriftFinding.tenant_id == tenant.id,
                                                           DriftFinding.cleared_at.is_(None)).with_for_update())
        params = {"reason": reason, **({"finding": finding.id} if finding else {})}
        operation = start_operation(
            ctx.db, kind=OperationKind.DRIFT_CORRECTION, tenant_id=tenant.id, key=key, request_fingerprint=fingerprint,
            requested_by=ctx.principal.actor, params=params, queue=ctx.services.settings.job_queue,
        )
        if finding is not None:
            finding.correction_operation_id = operation.id
        ctx.audit("drift.correction_requested", f"tenant:{tenant.id}", operation_id=str(operation.id), **params)
        return tenant, operation
