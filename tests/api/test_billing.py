"""Billing against stripe-mock and the real platform database: webhooks, exactly-once
creates, grace-period suspension, payment refusal, catalog sync and metering."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text

from api.billing import metering
from api.billing.signatures import signature_header
from api.billing.enforcement import enforce_all
from api.billing.stripe_api import StripeBilling
from api.billing.sync import sync_catalog
from api.db.models import AuditRecord, BillingEvent, OperationKind, Tenant, UsageHour, UsageSample
from api.db.session import Scope
from api.operations.runner import OperationRunner
from api.operations.steps import STEPS, StepContext
from tests.api import stripe_support, vault_support
from tests.api.conftest import customer_of, run_queue, send_event, sign_up, signup_and_verify, signup_body


def _tenant(services, tenant_id) -> Tenant:
    with services.db.transaction(Scope.system()) as session:
        return session.get(Tenant, uuid.UUID(str(tenant_id)))


def _post_raw(client, payload: bytes, headers: dict[str, str]):
    return client.post("/v1/billing/webhook", content=payload, headers={"Content-Type": "application/json", **headers})


def test_forged_unsigned_stale_and_replayed_webhooks_change_nothing(client, services):
    tenant = sign_up(client, services, tier="low")
    customer = customer_of(services, uuid.UUID(tenant.tenant_id))
    secret = services.settings.stripe_webhook_secret.get_secret_value()
    payload = stripe_support.event("invoice.payment_failed", {"object": "invoice", "customer": customer})

    assert _post_raw(client, payload, {}).status_code == 400
    forged = _post_raw(client, payload, {"Stripe-Signature": stripe_support.signature_header(payload, "whsec_wrong")})
    assert forged.status_code == 400 and forged.headers["content-type"] == "application/problem+json"
    stale = stripe_support.signature_header(payload, secret, timestamp=int(time.time()) - 3600)
    assert _post_raw(client, payload, {"Stripe-Signature": stale}).status_code == 400
    assert _tenant(services, tenant.tenant_id).payment_failed_at is None

    first = _post_raw(client, payload, stripe_support.signed(payload, secret))
    again = _post_raw(client, payload, stripe_support.signed(payload, secret))
    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert again.status_code == 200 and again.json()["duplicate"] is True
    event_id = first.json()["event_id"]
    with services.db.transaction(Scope.system()) as session:
        assert session.scalar(select(func.count()).select_from(BillingEvent).where(BillingEvent.event_id == event_id)) == 1
    assert _tenant(services, tenant.tenant_id).billing_status == "past_due"


def test_replayed_billing_step_creates_no_second_customer_or_subscription(client, services, stripe_requests):
    accepted = signup_and_verify(client, services, signup_body(tier="low"))
    operation_id, tenant_id = uuid.UUID(accepted["operation"]["id"]), uuid.UUID(accepted["tenant"]["id"])
    runner = OperationRunner(services)
    runner.run(operation_id, final_attempt=False)
    # The worker was killed after the billing step's Stripe calls but before its step record
    # was written: the step runs again.
    STEPS["billing"](StepContext(services, operation_id, tenant_id, OperationKind.SIGNUP, {"tier": "low"}, "billing"))
    keys = {
        path: [r.idempotency_key for r in stripe_requests.posts(path) if (r.idempotency_key or "").startswith(str(operation_id))]
        for path in ("/v1/customers", "/v1/subscriptions")
    }
    assert keys == {"/v1/customers": [f"{operation_id}:billing:customer"],
                    "/v1/subscriptions": [f"{operation_id}:billing:subscription"]}


def test_payment_failure_suspends_after_grace_and_payment_reactivates(client, services, driver):
    tenant = sign_up(client, services, tier="low")
    tenant_id = uuid.UUID(tenant.tenant_id)
    customer = customer_of(services, tenant_id)
    assert send_event(client, services, "invoice.payment_failed", {"object": "invoice", "customer": customer}).status_code == 200
    run_queue(services)
    assert _tenant(services, tenant_id).status == "ACTIVE"  # within the grace period

    failed_at = _tenant(services, tenant_id).payment_failed_at
    assert enforce_all(services, failed_at + timedelta(days=2))[tenant.slug] == "nothing to do"
    assert enforce_all(services, failed_at + timedelta(days=3, seconds=1))[tenant.slug].startswith("suspend started")
    assert enforce_all(services, failed_at + timedelta(days=3, seconds=2))[tenant.slug].startswith("suspend")
    run_queue(services)
    suspended = _tenant(services, tenant_id)
    assert suspended.status == "SUSPENDED" and suspended.billing_hold
    assert driver.stacks[(tenant_id, "shared:eu1")]["suspended"] is True

    refused = client.post(f"/v1/tenants/{tenant.tenant_id}/reactivate", headers=tenant.headers)
    assert refused.status_code == 402 and refused.json()["type"].endswith("/payment-required")

    paid = send_event(client, services, "invoice.paid", {"object": "invoice", "customer": customer})
    assert "reactivate started" in paid.json()["outcome"]
    run_queue(services)
    back = _tenant(services, tenant_id)
    assert back.status == "ACTIVE" and not back.billing_hold and back.payment_failed_at is None
    assert driver.stacks[(tenant_id, "shared:eu1")]["suspended"] is False


def test_tier_change_without_a_payable_subscription_is_refused(client, services):
    tenant = sign_up(client, services, tier="mid")
    customer = customer_of(services, uuid.UUID(tenant.tenant_id))
    send_event(client, services, "customer.subscription.updated",
               {"object": "subscription", "customer": customer, "status": "past_due", "items": {"data": []}})
    response = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "high"}, headers=tenant.headers)
    assert response.status_code == 402 and "past_due" in response.json()["detail"]
    assert _tenant(services, tenant.tenant_id).tier == "mid"


def test_second_catalog_sync_creates_nothing(services, stripe_requests):
    billing = StripeBilling.from_settings(services.settings, http_client=stripe_requests)
    with services.db.transaction(Scope.system()) as session:
        report = sync_catalog(session, billing)
    assert report.created == [] and report.replaced == [] and len(report.unchanged) == 19
    assert [r for r in stripe_requests.sent if r.method == "POST"] == []


def test_an_hour_of_usage_is_aggregated_and_sent_once(client, services, stripe_requests):
    tenant = sign_up(client, services, tier="low")
    tenant_id = uuid.UUID(tenant.tenant_id)
    hour = metering.hour_of(datetime.now(UTC) - timedelta(hours=3))
    for minute, cores in ((0, "1.0"), (20, "2.0"), (40, "3.0")):
        metering.record_reservations(
            services, {tenant_id: metering.Reservation(Decimal(cores), Decimal("4"))}, hour + timedelta(minutes=minute), [tenant_id])
    with services.db.transaction(Scope.tenant(tenant_id)) as session:
        assert metering.record_report(session, tenant_id, report_id="r-1", ingested_bytes=2_500_000_000, at=hour)
        assert not metering.record_report(session, tenant_id, report_id="r-1", ingested_bytes=2_500_000_000, at=hour)

    now = hour + timedelta(hours=2)
    assert metering.aggregate(services, hour, hour + timedelta(hours=1), now) == 3
    assert metering.aggregate(services, hour, hour + timedelta(hours=1), now) == 0
    with services.db.transaction(Scope.system()) as session:
        rows = {r.dimension: r for r in session.scalars(select(UsageHour).where(UsageHour.tenant_id == tenant_id))}
    assert rows["cpu_core_hours"].quantity == Decimal("2") and rows["gb_ingested"].quantity == Decimal("2.5")

    metering.report(services, services.billing, now)
    mine = [r for r in stripe_requests.posts("/v1/billing/meter_events") if tenant_id.hex in (r.idempotency_key or "")]
    assert len(mine) == 3
    metering.report(services, services.billing, now)
    assert [r for r in stripe_requests.posts("/v1/billing/meter_events") if tenant_id.hex in (r.idempotency_key or "")] == mine
    assert [d for d in metering.reconcile(services, hour, hour + timedelta(hours=1), now) if d.tenant_id == tenant_id] == []

    summary = client.get(f"/v1/tenants/{tenant.tenant_id}/billing", headers=tenant.headers)
    assert summary.status_code == 200


def test_deleting_a_tenant_cancels_its_subscription_and_deletes_the_customer_once(client, services, stripe_requests):
    tenant = sign_up(client, services, tier="low")
    tenant_id = uuid.UUID(tenant.tenant_id)
    customer, subscription = customer_of(services, tenant_id), _tenant(services, tenant_id).billing_subscription_id

    assert client.delete(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).status_code == 202
    run_queue(services)

    assert _tenant(services, tenant_id).status == "DELETED"
    sent = [(r.method, r.path) for r in stripe_requests.sent]
    assert sent.count(("DELETE", f"/v1/subscriptions/{subscription}")) == 1  # cancelled, invoicing what is due
    assert sent.count(("DELETE", f"/v1/customers/{customer}")) == 1  # personal data gone from Stripe


def _report(client, key_id: str, secret: str, body: dict, *, timestamp: int | None = None, signature: str | None = None):
    payload = json.dumps(body).encode()
    return client.post("/v1/billing/usage-reports", content=payload, headers={
        "Content-Type": "application/json", "Cameleer-Usage-Key": key_id,
        "Cameleer-Signature": signature or signature_header(secret, payload, timestamp)})


def test_usage_reports_need_the_tenants_own_signed_credential_and_count_once(client, services):
    tenant = sign_up(client, services, tier="mid")
    tenant_id = uuid.UUID(tenant.tenant_id)
    path = f"/v1/tenants/{tenant.tenant_id}/billing/usage-credential"
    issued = client.post(path, headers=tenant.headers)
    assert issued.status_code == 201
    key_id, secret = issued.json()["key_id"], issued.json()["secret"]
    stored = vault_support.client().secrets.kv.v2.read_secret_version(
        f"{tenant.slug}/usage-credential", mount_point="tenants", raise_on_deleted_version=False)["data"]["data"]
    assert stored == {"key_id": key_id, "secret": secret}  # in the tenant's KV path, readable by its servers
    with services.db.transaction(Scope.system()) as session:  # and nowhere in the database
        row = session.execute(text("SELECT * FROM usage_credentials WHERE key_id = :k"), {"k": key_id}).mappings().one()
    assert secret not in json.dumps({k: str(v) for k, v in row.items()}) and set(row) == {"tenant_id", "key_id", "created_at"}
    body = {"report_id": "srv-1:0001", "ingested_bytes": 3_000_000_000, "at": datetime.now(UTC).isoformat()}

    first, again = _report(client, key_id, secret, body), _report(client, key_id, secret, body)
    assert (first.status_code, first.json()["recorded"]) == (200, True)
    assert (again.status_code, again.json()["recorded"]) == (200, False)  # a retry counts once
    with services.db.transaction(Scope.system()) as session:
        samples = session.scalars(select(UsageSample.value).where(UsageSample.tenant_id == tenant_id,
                                                                    UsageSample.dimension == "gb_ingested")).all()
    assert samples == [Decimal(3)]

    other = dict(body, report_id="srv-1:0002")
    refused = {
        "wrong secret": _report(client, key_id, "not-the-secret", other),
        "stale": _report(client, key_id, secret, other, timestamp=int(time.time()) - 3600),
        "unsigned": _report(client, key_id, secret, other, signature="t=1"),
        "unknown key": _report(client, "cuk_unknown", secret, other),
    }
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 401)
    assert all(r.json()["type"].endswith("/usage-report-unauthorized") for r in refused.values())
    bad_body = _report(client, key_id, secret, {"report_id": "x", "ingested_bytes": -1, "at": body["at"]})
    assert bad_body.status_code == 422

    # The credential is no user token; rotating it retires the old one at once.
    as_bearer = client.get(f"/v1/tenants/{tenant.tenant_id}", headers={"Authorization": f"Bearer {secret}"})
    assert as_bearer.status_code == 401
    rotated = client.post(path, headers=tenant.headers).json()
    assert _report(client, key_id, secret, other).status_code == 401
    assert _report(client, rotated["key_id"], rotated["secret"], other).json()["recorded"] is True
    with services.db.transaction(Scope.system()) as session:
        audited = session.scalars(select(AuditRecord.action).where(AuditRecord.tenant_id == tenant_id)).all()
    assert audited.count("billing.usage_report") == 2 and audited.count("server_credential.rotate") == 2
    assert secret not in json.dumps([r.text for r in refused.values()])


def test_owners_read_their_invoices_from_stripe(client, services, stripe_requests):
    tenant = sign_up(client, services, tier="low")
    response = client.get(f"/v1/tenants/{tenant.tenant_id}/billing/invoices", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json() and all(invoice["id"].startswith("in_") for invoice in response.json())
    assert any(r.method == "GET" and r.path == "/v1/invoices" for r in stripe_requests.sent)
