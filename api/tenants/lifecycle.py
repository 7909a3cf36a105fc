"""Lifecycle requests (suspend, reactivate, change tier, delete) and operation control
(confirm, cancel, retry). The API records and enqueues; the worker does the work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from api.audit.chain import append
from api.auth.dependencies import TenantContext
from api.billing.stripe_api import PAYABLE_STATUSES
from api.clusters import assign
from api.db.models import Operation, OperationKind, OperationStatus, Tenant, TenantStatus
from api.db.session import Scope, ScopedSession
from api.dependencies import mark_audited
from api.operations.service import (
    find_by_key,
    operation_in_progress,
    replay_or_conflict,
    resume_operation,
    start_operation,
    unfinished_operation,
)
from api.problems import Problem, not_found
from api.tiers import tier_change_params, tier_named

ALLOWED_FROM: dict[OperationKind, set[TenantStatus]] = {
    OperationKind.SUSPEND: {TenantStatus.ACTIVE},
    OperationKind.REACTIVATE: {TenantStatus.SUSPENDED},
    OperationKind.CHANGE_TIER: {TenantStatus.ACTIVE},
    OperationKind.DELETE: {TenantStatus.ACTIVE, TenantStatus.SUSPENDED, TenantStatus.FAILED, TenantStatus.PENDING},
}


def _check_transition(tenant: Tenant, kind: OperationKind) -> None:
    allowed = ALLOWED_FROM[kind]
    if TenantStatus(tenant.status) not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        raise Problem(409, "invalid-state", f"Cannot {kind.value.replace('_', ' ')} a tenant that is {tenant.status}; it must be {names}.")
    _check_billing(tenant, kind)


def _check_billing(tenant: Tenant, kind: OperationKind) -> None:
    """Only a payment lifts a suspension for non-payment, and a tier change is paid through
    the subscription: neither happens without a payable subscription."""
    if kind is OperationKind.REACTIVATE and tenant.billing_hold:
        raise Problem(
            402, "payment-required",
            "The tenant is suspended for non-payment; it is reactivated when Stripe reports the open invoice paid.",
        )
    if kind is OperationKind.CHANGE_TIER and tenant.billing_status not in PAYABLE_STATUSES:
        raise Problem(
            402, "payment-required",
            f"The subscription is {tenant.billing_status or 'missing'}; a tier change needs an active or trialing "
            "subscription. Pay the open invoice, then change the tier.",
        )


def _tier_change_params(tenant: Tenant, tier_name: str) -> tuple[dict[str, Any], bool]:
    tier = tier_named(tier_name)
    if tier.name == tenant.tier:
        raise Problem(422, "same-tier", f"The tenant is already on tier {tier.name!r}.")
    return tier_change_params(tier, tenant.placement)


def request_operation(
    ctx: TenantContext, kind: OperationKind, idempotency_key: str | None, body: dict[str, Any] | None = None
) -> tuple[Tenant, Operation]:
    body = body or {}
    key = f"tenant:{ctx.tenant_id}:{kind.value}:{idempotency_key or uuid.uuid4().hex}"
    request_fingerprint = ctx.services.fingerprints.of({"kind": kind.value, **body})
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        if tenant is None:
            raise not_found("Tenant")
        existing = find_by_key(ctx.db, key)
        if existing is not None:
            return tenant, replay_or_conflict(existing, request_fingerprint)
        _check_transition(tenant, kind)
        params, moves = _tier_change_params(tenant, body["tier"]) if kind is OperationKind.CHANGE_TIER else ({}, False)
        operation = start_operation(
            ctx.db, kind=kind, tenant_id=tenant.id, key=key, request_fingerprint=request_fingerprint,
            requested_by=ctx.principal.actor, params=params, moves_placement=moves, queue=ctx.services.settings.job_queue,
        )
        ctx.audit(f"tenant.{kind.value}.requested", f"tenant:{tenant.id}", operation_id=str(operation.id), **params)
        return tenant, operation


def _requeue(ctx: TenantContext, operation: Operation) -> None:
    resume_operation(ctx.db, operation, queue=ctx.services.settings.job_queue)


def confirm_operation(ctx: TenantContext, operation_id: uuid.UUID) -> Operation:
    """Apply a previewed placement change."""
    with ctx.db.begin():
        operation = ctx.db.get(Operation, operation_id, with_for_update=True)
        if operation.status != OperationStatus.AWAITING_CONFIRMATION:
            raise Problem(409, "not-awaiting-confirmation", f"Operation {operation_id} is {operation.status}; only an operation awaiting confirmation can be confirmed.")
        operation.params = {**operation.params, "confirmed_by": ctx.principal.actor}
        _requeue(ctx, operation)
        ctx.audit("operation.confirm", f"operation:{operation_id}")
        return operation


def retry_operation(ctx: TenantContext, operation_id: uuid.UUID) -> Operation:
    """Operator: run a FAILED operation again from its failed step."""
    with ctx.db.begin():
        operation = ctx.db.get(Operation, operation_id, with_for_update=True)
        if operation.status != OperationStatus.FAILED:
            raise Problem(409, "not-failed", f"Operation {operation_id} is {operation.status}; only a FAILED operation can be retried.")
        if cancellation(operation.params):
            raise Problem(409, "cancelled", f"Operation {operation_id} was cancelled; request the change again instead.")
        other = unfinished_operation(ctx.db, operation.tenant_id)
        if other is not None:
            raise operation_in_progress(other)
        operation.steps = [{**s, "status": "pending"} if s["status"] == "failed" else s for s in operation.steps]
        operation.error = None
        operation.finished_at = None
        tenant = ctx.db.get(Tenant, operation.tenant_id)
        tenant.failure_reason = None
        _requeue(ctx, operation)
        ctx.audit("operation.retry", f"operation:{operation_id}")
        return operation


CANCELLABLE = (OperationStatus.AWAITING_CONFIRMATION, OperationStatus.AWAITING_CAPACITY)


def cancellation(params: dict[str, Any]) -> dict[str, Any] | None:
    """Who cancelled the operation, why and when; None when it was not cancelled."""
    return params.get("cancelled")


def cancel_operation(ctx: TenantContext, operation_id: uuid.UUID, reason: str) -> Operation:
    """End an operation that waits for confirmation or capacity: FAILED, marked cancelled (it
    cannot be retried), the tenant's status as it was. Nothing has been applied by then; a
    move's reserved target cluster is released. Cancelling it again answers the same."""
    # The system scope: releasing a reserved cluster writes the registry, in the same transaction.
    with ctx.services.db.transaction(Scope.system()) as session:
        operation = session.get(Operation, operation_id, with_for_update=True)
        if cancellation(operation.params):
            return operation
        if operation.status not in CANCELLABLE:
            raise Problem(409, "not-cancellable", f"Operation {operation_id} is {operation.status}; only an operation "
                                                  f"{' or '.join(CANCELLABLE)} can be cancelled.")
        was = operation.status
        _release_reserved_target(session, operation)
        _mark_cancelled(operation, ctx.principal.actor, reason)
        append(session, ctx.meta, "operation.cancel", f"operation:{operation_id}", tenant_id=operation.tenant_id,
               details={"reason": reason, "was": was})
        mark_audited(ctx.request)
        return operation


def _release_reserved_target(session: ScopedSession, operation: Operation) -> None:
    """A move's place step reserved a dedicated cluster for the tenant; it takes the next one now."""
    target = operation.params.get("placement")
    tenant = session.get(Tenant, operation.tenant_id)
    if operation.kind == OperationKind.CHANGE_TIER and target and target != tenant.placement:
        assign.release(session, tenant.slug, target)


def _mark_cancelled(operation: Operation, actor: str, reason: str) -> None:
    now = datetime.now(UTC)
    error = f"cancelled by {actor}: {reason}"
    operation.steps = [_cancelled_step(step, now, error) if step["status"] == "waiting" else step
                       for step in operation.steps]
    operation.params = {**operation.params, "cancelled": {"by": actor, "reason": reason, "at": now.isoformat()}}
    operation.status = OperationStatus.FAILED.value
    operation.error = error
    operation.finished_at = now


def _cancelled_step(step: dict[str, Any], now: datetime, error: str) -> dict[str, Any]:
    entry = {"at": now.isoformat(), "attempt": step["attempts"], "message": error}
    return {**step, "status": "failed", "finished_at": now.isoformat(), "errors": [*step["errors"], entry]}
