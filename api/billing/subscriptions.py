"""A tenant's Stripe customer and subscription, as the operations' billing steps change them.

Each Stripe id is committed to the tenant row as soon as Stripe returns it, and every create
carries an idempotency key made of the operation id and the step's purpose. A step that is
replayed after a crash therefore sends nothing for what is already recorded, and resends
(with the same key, so Stripe answers with the same object) only the one request whose
answer was lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from components.catalog import get_tier

from api.billing.catalog import subscription_items
from api.billing.stripe_api import PAYABLE_STATUSES, BillingRefused, StripeBilling, SubscriptionState
from api.billing.sync import price_lookup
from api.db.models import Tenant
from api.db.session import ScopedSession
from api.server_credential.store import revoke as revoke_credential

Transaction = Callable[[], AbstractContextManager[ScopedSession]]


def _tenant(session: ScopedSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise LookupError(f"tenant {tenant_id} does not exist")
    return tenant


def initial_status(state: SubscriptionState, trial_days: int) -> str:
    """What the platform believes about a new subscription. Only a requested trial (Stripe
    starts it without a payment) or a paid first invoice makes it payable; anything else
    waits for Stripe's webhook to say the payment went through."""
    if trial_days and state.status in PAYABLE_STATUSES:
        return "trialing"
    if state.latest_invoice_status == "paid":
        return "active"
    return "incomplete"


def ensure_subscription(
    tx: Transaction, billing: StripeBilling, tenant_id: uuid.UUID, operation_id: uuid.UUID, *, tier_name: str, email: str
) -> dict[str, Any]:
    tier = get_tier(tier_name)
    with tx() as session:
        tenant = _tenant(session, tenant_id)
        customer_id, subscription_id, name = tenant.billing_customer_id, tenant.billing_subscription_id, tenant.name
        items = subscription_items(tier, price_lookup(session))
    if customer_id is None:
        customer_id = billing.create_customer(
            email=email, name=name, tenant_id=str(tenant_id), idempotency_key=f"{operation_id}:billing:customer"
        )
        with tx() as session:
            _tenant(session, tenant_id).billing_customer_id = customer_id
    if subscription_id is None:
        trial_days = tier.billing.terms.trial_days
        state = billing.create_subscription(
            customer_id=customer_id, items=items, trial_days=trial_days, tenant_id=str(tenant_id),
            idempotency_key=f"{operation_id}:billing:subscription",
        )
        with tx() as session:
            tenant = _tenant(session, tenant_id)
            tenant.billing_subscription_id = state.id
            # No billing_status_at: that is the time of the last *event* applied, and any
            # event about this subscription is newer than what its create answer said.
            tenant.billing_status = initial_status(state, trial_days)
    with tx() as session:
        tenant = _tenant(session, tenant_id)
        return {"customer_id": tenant.billing_customer_id, "subscription_id": tenant.billing_subscription_id,
                "billing_status": tenant.billing_status}


def require_payable(tenant: Tenant) -> None:
    if tenant.billing_subscription_id is None or tenant.billing_status not in PAYABLE_STATUSES:
        raise BillingRefused(
            f"the tenant's subscription is {tenant.billing_status or 'missing'}; a tier change needs an active "
            "or trialing subscription (pay the open invoice first)"
        )


def change_tier(
    tx: Transaction, billing: StripeBilling, tenant_id: uuid.UUID, operation_id: uuid.UUID, *, tier_name: str
) -> dict[str, Any]:
    """Move the subscription to the new tier's prices, prorated, before the stack changes."""
    with tx() as session:
        tenant = _tenant(session, tenant_id)
        require_payable(tenant)
        subscription_id = tenant.billing_subscription_id
        items = subscription_items(get_tier(tier_name), price_lookup(session))
    state = billing.change_subscription(subscription_id, items, idempotency_key=f"{operation_id}:billing:change-tier")
    return {"subscription_id": state.id, "tier": tier_name}


def cancel_for_delete(tx: Transaction, billing: StripeBilling, tenant_id: uuid.UUID, operation_id: uuid.UUID) -> dict[str, Any]:
    """End the subscription now and remove the customer's personal data from Stripe."""
    with tx() as session:
        tenant = _tenant(session, tenant_id)
        customer_id, subscription_id = tenant.billing_customer_id, tenant.billing_subscription_id
    if subscription_id:
        billing.cancel_now(subscription_id, idempotency_key=f"{operation_id}:billing:cancel")
    if customer_id:
        billing.delete_customer(customer_id)
    with tx() as session:
        tenant = _tenant(session, tenant_id)
        tenant.billing_status = "canceled" if subscription_id else tenant.billing_status
        revoke_credential(session, tenant_id)  # its servers fetch and report nothing more
    return {"cancelled": subscription_id is not None, "customer_deleted": customer_id is not None}
