"""What operations need from billing. The Stripe implementation comes with the billing
issue; every call is idempotent by tenant id (Stripe: idempotency keys / metadata lookup)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BillingAccount:
    customer_id: str
    subscription_id: str


class BillingGateway(Protocol):
    def ensure_subscription(self, tenant_id: uuid.UUID, *, tier: str, email: str, name: str) -> BillingAccount:
        """Create (or find) the customer and its subscription to ``tier``."""
        ...

    def change_plan(self, tenant_id: uuid.UUID, account: BillingAccount, *, tier: str) -> BillingAccount: ...

    def cancel(self, tenant_id: uuid.UUID, account: BillingAccount) -> None: ...
