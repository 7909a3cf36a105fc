"""Every call the platform makes to Stripe, through the official SDK (``StripeClient``).

Each create carries an idempotency key chosen by the caller (derived from the operation
and step, or from the catalog item), so a retried or resumed step that sends the same
request again gets the object Stripe created the first time instead of a second one.
Stripe's errors become two kinds: ``BillingUnavailable`` (network, rate limit, Stripe's
5xx: retry later) and ``BillingRefused`` (the request itself was refused: retrying the
same request cannot help).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import stripe

from api.settings import Settings

# Subscription statuses in which the tenant may be provisioned and keep running.
PAYABLE_STATUSES = frozenset({"active", "trialing"})


class BillingNotConfigured(RuntimeError):
    """No Stripe key or webhook secret in the settings."""


class BillingUnavailable(Exception):
    """Stripe could not be reached or answered with a server error; retry later."""


class BillingRefused(Exception):
    """Stripe refused the request (declined card, invalid parameters, bad key)."""


@dataclass(frozen=True)
class SubscriptionState:
    id: str
    status: str
    latest_invoice_id: str | None
    latest_invoice_status: str | None


@dataclass(frozen=True)
class InvoiceSummary:
    id: str
    status: str | None
    amount_due: int
    amount_paid: int
    currency: str
    created: datetime
    hosted_invoice_url: str | None


@contextmanager
def _translated_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise BillingUnavailable(f"Stripe is unavailable ({action}): {exc.user_message or type(exc).__name__}") from exc
    except stripe.CardError as exc:
        raise BillingRefused(f"the payment was declined ({action}): {exc.user_message or exc.code}") from exc
    except stripe.StripeError as exc:
        if exc.http_status is None or exc.http_status >= 500:
            raise BillingUnavailable(f"Stripe failed ({action}): HTTP {exc.http_status}") from exc
        raise BillingRefused(f"Stripe refused {action}: {exc.user_message or exc.code or exc.http_status}") from exc


def _get(obj: Any, name: str) -> Any:
    """A field of a Stripe object or of an id string (unexpanded reference)."""
    if obj is None or isinstance(obj, str):
        return None
    return getattr(obj, name, None)


class StripeBilling:
    """The platform's Stripe account, as seen by the operations, webhooks and metering."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings, *, http_client: stripe.HTTPClient | None = None) -> StripeBilling:
        if settings.stripe_api_key is None:
            raise BillingNotConfigured(
                "billing needs CAMELEER_STRIPE_API_KEY (and CAMELEER_STRIPE_WEBHOOK_SECRET); "
                "scripts/services.sh writes both for the local stripe-mock into services.env"
            )
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses=base,
            max_network_retries=settings.stripe_max_network_retries,
            http_client=http_client,
        )
        return cls(client)

    # -- catalog ------------------------------------------------------------------------

    def _service(self, kind: str):
        return {"meter": self.client.v1.billing.meters, "product": self.client.v1.products,
                "price": self.client.v1.prices}[kind]

    def create_catalog_object(self, kind: str, params: dict[str, Any], *, idempotency_key: str) -> str:
        with _translated_errors(f"creating a {kind}"):
            return self._service(kind).create(params, {"idempotency_key": idempotency_key}).id

    def catalog_object_exists(self, kind: str, stripe_id: str) -> bool:
        try:
            with _translated_errors(f"reading {kind} {stripe_id}"):
                self._service(kind).retrieve(stripe_id)
        except BillingRefused as exc:
            if isinstance(exc.__cause__, stripe.InvalidRequestError) and exc.__cause__.http_status == 404:
                return False
            raise
        return True

    def find_price(self, lookup_key: str, unit_amount_decimal: str) -> str | None:
        with _translated_errors(f"looking up price {lookup_key}"):
            page = self.client.v1.prices.list({"lookup_keys": [lookup_key], "active": True, "limit": 10})
        for price in page.data:
            if price.lookup_key == lookup_key and _same_amount(price.unit_amount_decimal, unit_amount_decimal):
                return price.id
        return None

    def find_meter(self, event_name: str) -> str | None:
        with _translated_errors(f"looking up meter {event_name}"):
            page = self.client.v1.billing.meters.list({"status": "active", "limit": 100})
        return next((meter.id for meter in page.data if meter.event_name == event_name), None)

    def archive_price(self, price_id: str, *, idempotency_key: str) -> None:
        with _translated_errors(f"archiving price {price_id}"):
            self.client.v1.prices.update(price_id, {"active": False}, {"idempotency_key": idempotency_key})

    # -- customers and subscriptions ----------------------------------------------------

    def create_customer(self, *, email: str, name: str, tenant_id: str, idempotency_key: str) -> str:
        params = {"email": email, "name": name, "metadata": {"tenant_id": tenant_id}}
        with _translated_errors("creating the customer"):
            return self.client.v1.customers.create(params, {"idempotency_key": idempotency_key}).id

    def create_subscription(
        self, *, customer_id: str, items: list[dict[str, Any]], trial_days: int, tenant_id: str, idempotency_key: str
    ) -> SubscriptionState:
        params: dict[str, Any] = {
            "customer": customer_id,
            "items": items,
            "metadata": {"tenant_id": tenant_id},
            # The first invoice waits for the customer's payment (the payment page confirms it)
            # instead of failing the request; its confirmation secret is read on demand.
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": ["latest_invoice"],
        }
        if trial_days:
            params["trial_period_days"] = trial_days
        with _translated_errors("creating the subscription"):
            subscription = self.client.v1.subscriptions.create(params, {"idempotency_key": idempotency_key})
        return _state(subscription)

    def change_subscription(self, subscription_id: str, items: list[dict[str, Any]], *, idempotency_key: str) -> SubscriptionState:
        """Replace the subscription's items (a tier change), prorated and invoiced now. With
        ``error_if_incomplete`` Stripe refuses the change when the prorated invoice cannot be
        paid, and the subscription stays as it was."""
        with _translated_errors(f"reading subscription {subscription_id}"):
            current = self.client.v1.subscriptions.retrieve(subscription_id)
        removed = [{"id": item.id, "deleted": True} for item in current["items"].data]
        params = {
            "items": removed + items,
            "proration_behavior": "always_invoice",
            "payment_behavior": "error_if_incomplete",
            "cancel_at_period_end": False,
            "expand": ["latest_invoice"],
        }
        with _translated_errors("changing the subscription"):
            return _state(self.client.v1.subscriptions.update(subscription_id, params, {"idempotency_key": idempotency_key}))

    def cancel_at_period_end(self, subscription_id: str, *, idempotency_key: str) -> None:
        with _translated_errors("scheduling the cancellation"):
            self.client.v1.subscriptions.update(
                subscription_id, {"cancel_at_period_end": True}, {"idempotency_key": idempotency_key}
            )

    def cancel_now(self, subscription_id: str, *, idempotency_key: str) -> None:
        """Cancel at once, invoicing what is due (metered usage, prorations)."""
        try:
            with _translated_errors("cancelling the subscription"):
                self.client.v1.subscriptions.cancel(
                    subscription_id, {"invoice_now": True, "prorate": True}, {"idempotency_key": idempotency_key}
                )
        except BillingRefused as exc:
            if not _already_gone(exc):
                raise

    def delete_customer(self, customer_id: str) -> None:
        """Remove the customer's personal data from Stripe; its invoices stay, as tax law wants."""
        try:
            with _translated_errors("deleting the customer"):
                self.client.v1.customers.delete(customer_id)
        except BillingRefused as exc:
            if not _already_gone(exc):
                raise

    def payment_client_secret(self, subscription_id: str) -> str | None:
        """The secret the payment page needs to confirm the subscription's open invoice."""
        with _translated_errors(f"reading subscription {subscription_id}"):
            subscription = self.client.v1.subscriptions.retrieve(
                subscription_id, {"expand": ["latest_invoice.confirmation_secret"]}
            )
        return _get(_get(subscription.latest_invoice, "confirmation_secret"), "client_secret") or None

    def invoices(self, customer_id: str, *, limit: int = 24) -> list[InvoiceSummary]:
        with _translated_errors("listing invoices"):
            page = self.client.v1.invoices.list({"customer": customer_id, "limit": limit})
        return [
            InvoiceSummary(
                id=invoice.id, status=invoice.status, amount_due=invoice.amount_due, amount_paid=invoice.amount_paid,
                currency=invoice.currency, created=datetime.fromtimestamp(invoice.created).astimezone(),
                hosted_invoice_url=invoice.hosted_invoice_url,
            )
            for invoice in page.data
        ]

    # -- metering -----------------------------------------------------------------------

    def send_meter_event(self, *, event_name: str, customer_id: str, value: int, identifier: str, timestamp: datetime) -> None:
        """Stripe keeps one event per ``identifier`` (for at least 24 h): resending is harmless."""
        params = {
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": int(timestamp.timestamp()),
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
        }
        with _translated_errors(f"sending meter event {identifier}"):
            self.client.v1.billing.meter_events.create(params, {"idempotency_key": identifier})


def _state(subscription: Any) -> SubscriptionState:
    invoice = subscription.latest_invoice
    return SubscriptionState(
        id=subscription.id,
        status=subscription.status,
        latest_invoice_id=invoice if isinstance(invoice, str) else _get(invoice, "id"),
        latest_invoice_status=_get(invoice, "status"),
    )


def _same_amount(stripe_amount: str | None, declared: str) -> bool:
    return stripe_amount is not None and Decimal(stripe_amount) == Decimal(declared)


def _already_gone(exc: BillingRefused) -> bool:
    cause = exc.__cause__
    return isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 404
