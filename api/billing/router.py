"""Billing endpoints: Stripe's webhook, and the owners' view of their subscription."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from components.catalog import MeteredPricing, UsageDimension
from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import func, select

from api.auth.dependencies import TenantContext, require
from api.auth.roles import READERS, TenantRole
from api.billing import webhooks
from api.billing.enforcement import grace_deadline
from api.billing.stripe_api import BillingRefused, BillingUnavailable, InvoiceSummary
from api.db.models import Tenant, UsageHour
from api.dependencies import ServicesDep, mark_audited
from api.metrics import BILLING_WEBHOOKS
from api.problems import Problem, not_found, problems
from api.tiers import tier_named

router = APIRouter(tags=["billing"])

STRIPE = {409: "`/problems/billing-refused`: Stripe refused the request",
          503: "`/problems/billing-unavailable`: Stripe cannot be reached now"}
NO_SUBSCRIPTION = {404: "`/problems/not-found`: no such tenant for the caller, or it has no subscription"}


class WebhookReceipt(BaseModel):
    event_id: str
    duplicate: bool
    outcome: str


@router.post("/v1/billing/webhook", summary="Stripe webhook endpoint (signed with the endpoint's secret)",
             responses=problems({
                 400: "`/problems/invalid-webhook`: the signature does not verify, or the payload is no event",
                 503: "`/problems/billing-not-configured`: no webhook secret is set",
             }))
async def stripe_webhook(
    request: Request,
    services: ServicesDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookReceipt:
    secret = services.settings.stripe_webhook_secret
    if secret is None:
        raise Problem(503, "billing-not-configured", "CAMELEER_STRIPE_WEBHOOK_SECRET is not set.")
    payload = await request.body()
    try:
        event = webhooks.verify(payload, stripe_signature, secret.get_secret_value(),
                                services.settings.stripe_webhook_tolerance_seconds)
    except webhooks.InvalidWebhook as exc:
        BILLING_WEBHOOKS.labels("unknown", "rejected").inc()
        raise Problem(400, "invalid-webhook", str(exc)) from None
    outcome = await run_in_threadpool(webhooks.handle, services, event)
    BILLING_WEBHOOKS.labels(event["type"], "duplicate" if outcome.duplicate else "handled").inc()
    mark_audited(request)
    return WebhookReceipt(event_id=outcome.event_id, duplicate=outcome.duplicate, outcome=outcome.detail)


class UsageLine(BaseModel):
    dimension: str
    quantity: Decimal
    unit_price: Decimal
    estimate: Decimal


class BillingSummary(BaseModel):
    tier: str
    subscription_status: str | None
    payment_failed_at: datetime | None
    grace_until: datetime | None
    suspended_for_non_payment: bool
    cancel_at_period_end: bool
    overage_since: datetime | None
    currency: str
    period_start: datetime
    usage: list[UsageLine]
    base_fee: Decimal | None
    estimate: Decimal


def _period_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@router.get("/v1/tenants/{tenant_id}/billing", summary="Subscription state and this month's usage with a cost estimate")
def billing_summary(ctx: Annotated[TenantContext, require(TenantRole.ADMIN, platform=READERS)]) -> BillingSummary:
    start = _period_start(datetime.now(UTC))
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        if tenant is None:
            raise not_found("Tenant")
        totals = {dimension: total for dimension, total in ctx.db.execute(
            select(UsageHour.dimension, func.sum(UsageHour.quantity))
            .where(UsageHour.tenant_id == tenant.id, UsageHour.hour >= start).group_by(UsageHour.dimension)
        )}
    pricing = tier_named(tenant.tier).billing
    metered = isinstance(pricing, MeteredPricing)
    usage = []
    for dimension in UsageDimension:
        quantity = Decimal(totals.get(dimension.value) or 0)
        price = pricing.unit_price(dimension) if metered else Decimal(0)
        usage.append(UsageLine(dimension=dimension.value, quantity=quantity, unit_price=price,
                               estimate=(quantity * price).quantize(Decimal("0.01"))))
    base = pricing.base_fee_monthly if metered else pricing.monthly_price(pricing.minimum)
    return BillingSummary(
        tier=tenant.tier, subscription_status=tenant.billing_status, payment_failed_at=tenant.payment_failed_at,
        grace_until=grace_deadline(tenant), suspended_for_non_payment=tenant.billing_hold,
        cancel_at_period_end=tenant.cancel_at_period_end, overage_since=tenant.usage_overage_at,
        currency=pricing.currency, period_start=start, usage=usage, base_fee=base,
        estimate=base + sum((line.estimate for line in usage), Decimal(0)),
    )


class PaymentOut(BaseModel):
    customer_id: str
    subscription_id: str
    subscription_status: str | None
    client_secret: str | None


def _billing_call(call):
    try:
        return call()
    except BillingUnavailable as exc:
        raise Problem(503, "billing-unavailable", str(exc)) from None
    except BillingRefused as exc:
        raise Problem(409, "billing-refused", str(exc)) from None


@router.get("/v1/tenants/{tenant_id}/billing/payment", summary="The client secret the payment page confirms the first invoice with",
            responses=problems({**STRIPE, **NO_SUBSCRIPTION}))
def payment(ctx: Annotated[TenantContext, require(TenantRole.OWNER)]) -> PaymentOut:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        if tenant is None or tenant.billing_subscription_id is None:
            raise not_found("Subscription")
        customer_id, subscription_id = tenant.billing_customer_id, tenant.billing_subscription_id
        status = tenant.billing_status
    secret = _billing_call(lambda: ctx.services.billing.payment_client_secret(subscription_id))
    return PaymentOut(customer_id=customer_id, subscription_id=subscription_id, subscription_status=status,
                      client_secret=secret)


@router.get("/v1/tenants/{tenant_id}/billing/invoices", summary="The customer's invoices, newest first",
            responses=problems(STRIPE))
def invoices(ctx: Annotated[TenantContext, require(TenantRole.ADMIN, platform=READERS)]) -> list[InvoiceSummary]:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        customer_id = tenant.billing_customer_id if tenant else None
    if customer_id is None:
        return []
    return _billing_call(lambda: ctx.services.billing.invoices(customer_id))


@router.post("/v1/tenants/{tenant_id}/billing/cancel", summary="Cancel at period end; the tenant is deleted when the period ends",
             responses=problems({**STRIPE, **NO_SUBSCRIPTION}))
def cancel(ctx: Annotated[TenantContext, require(TenantRole.OWNER)]) -> BillingSummary:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        if tenant is None or tenant.billing_subscription_id is None:
            raise not_found("Subscription")
        subscription_id, already = tenant.billing_subscription_id, tenant.cancel_at_period_end
    if not already:
        _billing_call(lambda: ctx.services.billing.cancel_at_period_end(
            subscription_id, idempotency_key=f"{ctx.tenant_id}:billing:cancel-at-period-end"))
        with ctx.db.begin():
            ctx.db.get(Tenant, ctx.tenant_id).cancel_at_period_end = True
            ctx.audit("billing.cancel_at_period_end", f"tenant:{ctx.tenant_id}", subscription_id=subscription_id)
    return billing_summary(ctx)
