"""What a tenant's billing state asks of its workloads, and the operation that makes it so.

A webhook only records what Stripe said (status, payment failure time); this module decides:
an unpaid invoice past the tier's grace period suspends, a payment lifts a billing
suspension, a subscription that ended suspends (or deletes, when the owner cancelled at
period end). It runs right after each webhook for that tenant and every few minutes for all
of them (a job-queue periodic task), so a deadline that passes with no event, or an action
deferred because another operation was running, is still carried out. Each operation it
starts has an idempotency key naming the cause, so running it twice starts nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from components.catalog import get_tier
from sqlalchemy import or_, select

from api.audit.chain import AuditMeta, append
from api.billing.stripe_api import PAYABLE_STATUSES
from api.db.models import OperationKind, Tenant, TenantStatus
from api.db.session import Scope, ScopedSession
from api.operations.service import find_by_key, start_operation, unfinished_operation
from api.services import Services

log = logging.getLogger(__name__)
ACTOR = "billing"


def _stamp(moment: datetime | None) -> str:
    return f"{moment:%Y%m%dT%H%M%S}" if moment else "unknown"


def grace_deadline(tenant: Tenant) -> datetime | None:
    if tenant.payment_failed_at is None:
        return None
    return tenant.payment_failed_at + timedelta(days=get_tier(tenant.tier).billing.terms.payment_grace_days)


def required_action(tenant: Tenant, now: datetime) -> tuple[OperationKind, str] | None:
    """The operation the billing state calls for, and its cause (part of its idempotency key)."""
    status = TenantStatus(tenant.status)
    if tenant.billing_status == "canceled" and status in (TenantStatus.ACTIVE, TenantStatus.SUSPENDED):
        if tenant.cancel_at_period_end:
            return OperationKind.DELETE, "cancelled-at-period-end"
        if status is TenantStatus.ACTIVE:
            return OperationKind.SUSPEND, f"subscription-ended:{_stamp(tenant.billing_status_at)}"
        return None
    deadline = grace_deadline(tenant)
    if status is TenantStatus.ACTIVE and deadline is not None and now >= deadline:
        return OperationKind.SUSPEND, f"unpaid-since:{_stamp(tenant.payment_failed_at)}"
    if (
        status is TenantStatus.SUSPENDED and tenant.billing_hold
        and tenant.payment_failed_at is None and tenant.billing_status in PAYABLE_STATUSES
    ):
        return OperationKind.REACTIVATE, f"paid:{_stamp(tenant.billing_status_at)}"
    return None


def enforce_tenant(session: ScopedSession, services: Services, tenant: Tenant, now: datetime) -> str:
    """Start what :func:`required_action` asks for, in the caller's transaction."""
    action = required_action(tenant, now)
    if action is None:
        return "nothing to do"
    kind, cause = action
    key = f"billing:{tenant.id}:{kind.value}:{cause}"
    if find_by_key(session, key) is not None:
        return f"{kind.value} already started ({cause})"
    running = unfinished_operation(session, tenant.id)
    if running is not None:
        return f"{kind.value} deferred: operation {running.id} ({running.kind}) is {running.status}"
    operation = start_operation(
        session, kind=kind, tenant_id=tenant.id, key=key, request_fingerprint=hashlib.sha256(key.encode()).hexdigest(),
        requested_by=ACTOR, params={"reason": "billing", "cause": cause}, queue=services.settings.job_queue,
    )
    if kind is OperationKind.SUSPEND:
        tenant.billing_hold = True
    elif kind is OperationKind.REACTIVATE:
        tenant.billing_hold = False
    append(
        session, AuditMeta(ACTOR), f"billing.{kind.value}", f"tenant:{tenant.id}", tenant_id=tenant.id,
        details={"operation_id": str(operation.id), "cause": cause},
    )
    log.info("billing: %s of tenant %s started (%s), operation %s", kind.value, tenant.slug, cause, operation.id)
    return f"{kind.value} started: operation {operation.id}"


def enforce_all(services: Services, now: datetime | None = None) -> dict[str, str]:
    """Every tenant whose billing state may call for an operation; slug -> outcome."""
    now = now or datetime.now(UTC)
    query = select(Tenant).where(
        Tenant.status.in_([TenantStatus.ACTIVE.value, TenantStatus.SUSPENDED.value]),
        or_(Tenant.payment_failed_at.is_not(None), Tenant.billing_hold, Tenant.billing_status == "canceled"),
    )
    outcomes: dict[str, Any] = {}
    with services.db.transaction(Scope.system()) as session:
        for tenant in session.scalars(query.with_for_update(skip_locked=True)):
            outcomes[tenant.slug] = enforce_tenant(session, services, tenant, now)
    return outcomes
