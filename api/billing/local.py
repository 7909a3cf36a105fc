"""Billing without a payment provider: deterministic ids derived from the tenant id,
so repeating a call can never create a second customer."""

from __future__ import annotations

import uuid

from api.billing.gateway import BillingAccount


class LocalBillingGateway:
    def ensure_subscription(self, tenant_id: uuid.UUID, *, tier: str, email: str, name: str) -> BillingAccount:
        return BillingAccount(customer_id=f"local_cus_{tenant_id.hex}", subscription_id=f"local_sub_{tenant_id.hex}")

    def change_plan(self, tenant_id: uuid.UUID, account: BillingAccount, *, tier: str) -> BillingAccount:
        return account

    def cancel(self, tenant_id: uuid.UUID, account: BillingAccount) -> None:
        return None
