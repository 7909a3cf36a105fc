"""Stripe webhook events: verified, handled once, audited.

``verify`` checks the ``Stripe-Signature`` header with the SDK (HMAC-SHA256 with the
endpoint's signing secret, timestamp within the tolerance). ``handle`` records the event id
and applies the event in one transaction, so a replayed delivery, or two concurrent ones,
change nothing the second time. Events may arrive out of order: a status older than the
one recorded (by Stripe's creation time) is not applied.

What each event means for the tenant (operations are started by ``enforcement``):

    invoice.paid                      payment recorded; a waiting signup resumes; a billing
                                      suspension is lifted
    invoice.payment_failed            the grace period starts (suspension when it ends)
    customer.subscription.updated     its status is recorded; a new price is a tier change
    customer.subscription.deleted     suspension, or deletion after a cancel at period end
    checkout.session.completed        a paid checkout activates the subscription
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from api.audit.chain import AuditMeta, append
from api.billing.catalog import tier_of_price_key
from api.billing.enforcement import enforce_tenant
from api.billing.stripe_api import PAYABLE_STATUSES
from api.db.models import BillingCatalogItem, BillingEvent, Operation, OperationKind, OperationStatus, Tenant, TenantStatus
from api.db.session import Scope, ScopedSession
from api.operations.service import resume_operation, start_operation, unfinished_operation
from api.services import Services
from api.tiers import tier_change_params, tier_named

log = logging.getLogger(__name__)
ACTOR = "stripe"


class InvalidWebhook(ValueError):
    """Unsigned, wrongly signed, stale or malformed: Stripe is answered 400."""


@dataclass(frozen=True)
class Outcome:
    event_id: str
    duplicate: bool
    detail: str


def verify(payload: bytes, signature: str | None, secret: str, tolerance: int) -> dict[str, Any]:
    if not signature:
        raise InvalidWebhook("the request has no Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(f"the Stripe signature does not verify: {exc.user_message or exc}") from None
    except UnicodeDecodeError:
        raise InvalidWebhook("the payload is not UTF-8") from None
    try:
        event = json.loads(payload)
        if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
                and isinstance(event.get("data", {}).get("object"), dict) and isinstance(event.get("created"), int)):
            raise ValueError("not an event")
    except ValueError:
        raise InvalidWebhook("the payload is not a Stripe event (id, type, created, data.object)") from None
    return event


@dataclass
class EventContext:
    session: ScopedSession
    services: Services
    tenant: Tenant
    event: dict[str, Any]

    @property
    def obj(self) -> dict[str, Any]:
        return self.event["data"]["object"]

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.event["created"], UTC)

    def record_status(self, status: str) -> bool:
        """Apply ``status`` unless a newer event already set one."""
        tenant = self.tenant
        if tenant.billing_status_at is not None and self.created < tenant.billing_status_at:
            return False
        tenant.billing_status, tenant.billing_status_at = status, self.created
        return True

    def resume_waiting_payment(self) -> str:
        waiting = self.session.scalar(select(Operation).where(
            Operation.tenant_id == self.tenant.id, Operation.status == OperationStatus.AWAITING_PAYMENT.value,
        ))
        if waiting is None or self.tenant.billing_status not in PAYABLE_STATUSES:
            return ""
        resume_operation(self.session, waiting, queue=self.services.settings.job_queue)
        return f"; operation {waiting.id} resumed"

    def enforce(self) -> str:
        return "; " + enforce_tenant(self.session, self.services, self.tenant, datetime.now(UTC))


def _invoice_paid(ctx: EventContext) -> str:
    applied = ctx.record_status("active")
    ctx.tenant.payment_failed_at = None
    return ("paid" if applied else "paid (older than the recorded status)") + ctx.resume_waiting_payment() + ctx.enforce()


def _invoice_payment_failed(ctx: EventContext) -> str:
    ctx.record_status("past_due")
    if ctx.tenant.payment_failed_at is None:
        ctx.tenant.payment_failed_at = ctx.created
    return f"payment failed at {ctx.tenant.payment_failed_at.isoformat()}" + ctx.enforce()


def _subscription_deleted(ctx: EventContext) -> str:
    ctx.record_status("canceled")
    return "subscription ended" + ctx.enforce()


def _subscription_updated(ctx: EventContext) -> str:
    status = ctx.obj.get("status")
    applied = isinstance(status, str) and ctx.record_status(status)
    detail = f"status {status}" + ("" if applied else " (not applied: older than the recorded status)")
    return detail + _tier_change_from_stripe(ctx) + ctx.resume_waiting_payment()


def _checkout_completed(ctx: EventContext) -> str:
    if ctx.obj.get("mode") != "subscription" or ctx.obj.get("payment_status") not in ("paid", "no_payment_required"):
        return "checkout not paid yet"
    ctx.record_status("active")
    return "checkout paid" + ctx.resume_waiting_payment()


HANDLERS: dict[str, Callable[[EventContext], str]] = {
    "invoice.paid": _invoice_paid,
    "invoice.payment_succeeded": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "customer.subscription.deleted": _subscription_deleted,
    "customer.subscription.updated": _subscription_updated,
    "customer.subscription.created": _subscription_updated,
    "checkout.session.completed": _checkout_completed,
}


def _tier_change_from_stripe(ctx: EventContext) -> str:
    """A plan changed in Stripe (dashboard, customer portal) becomes a tier-change operation."""
    tier_name = _tier_of_subscription(ctx.session, ctx.obj)
    tenant = ctx.tenant
    if tier_name is None or tier_name == tenant.tier or TenantStatus(tenant.status) is not TenantStatus.ACTIVE:
        return ""
    running = unfinished_operation(ctx.session, tenant.id)
    if running is not None:
        return f"; tier {tier_name} not started: operation {running.id} ({running.kind}) is {running.status}"
    params, moves = tier_change_params(tier_named(tier_name), tenant.placement)
    key = f"stripe:{ctx.event['id']}:change_tier"
    operation = start_operation(
        ctx.session, kind=OperationKind.CHANGE_TIER, tenant_id=tenant.id, key=key,
        request_fingerprint=hashlib.sha256(key.encode()).hexdigest(), requested_by=ACTOR,
        params={**params, "initiated_by": "stripe"}, moves_placement=moves,
        queue=ctx.services.settings.job_queue,
    )
    return f"; tier change to {tier_name} started: operation {operation.id}"


def _tier_of_subscription(session: ScopedSession, subscription: dict[str, Any]) -> str | None:
    price_ids = [
        (item.get("price") or {}).get("id")
        for item in (subscription.get("items") or {}).get("data", [])
        if isinstance(item, dict)
    ]
    keys = session.scalars(select(BillingCatalogItem.key).where(BillingCatalogItem.stripe_id.in_([p for p in price_ids if p])))
    return next((tier for tier in map(tier_of_price_key, keys) if tier), None)


def _customer_of(obj: dict[str, Any]) -> str | None:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else None


def handle(services: Services, event: dict[str, Any]) -> Outcome:
    event_id, event_type = event["id"], event["type"]
    created = datetime.fromtimestamp(event["created"], UTC)
    with services.db.transaction(Scope.system()) as session:
        inserted = session.execute(
            insert(BillingEvent)
            .values(event_id=event_id, event_type=event_type, stripe_created_at=created, outcome="handling")
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(BillingEvent.event_id)
        ).first()
        if inserted is None:
            return Outcome(event_id, duplicate=True, detail="already handled")
        customer_id = _customer_of(event["data"]["object"])
        tenant = session.scalar(
            select(Tenant).where(Tenant.billing_customer_id == customer_id).with_for_update()
        ) if customer_id else None
        handler = HANDLERS.get(event_type)
        if handler is None:
            detail = f"{event_type} is not handled"
        elif tenant is None:
            detail = f"no tenant has customer {customer_id}"
        else:
            detail = handler(EventContext(session, services, tenant, event))
        record = session.get(BillingEvent, event_id)
        record.outcome, record.tenant_id = detail, tenant.id if tenant else None
        append(
            session, AuditMeta(ACTOR), f"billing.webhook.{event_type}"[:80], f"stripe-event:{event_id}",
            tenant_id=tenant.id if tenant else None, details={"event_id": event_id, "outcome": detail},
        )
    log.info("stripe event %s (%s): %s", event_id, event_type, detail)
    return Outcome(event_id, duplicate=False, detail=detail)
