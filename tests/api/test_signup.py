"""Signup: validation, idempotency, and the flow to ACTIVE through the real job queue."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text

from api.db.models import License, Operation, Tenant, User
from api.db.session import Scope
from tests.api.conftest import pay_first_invoice, STRONG_PASSWORD, login, run_queue, signup_body, unique_slug

PROBLEM = "application/problem+json"


def _counts(services) -> dict[str, int]:
    with services.db.transaction(Scope.system()) as s:
        return {
            "tenants": s.scalar(select(func.count()).select_from(Tenant)),
            "users": s.scalar(select(func.count()).select_from(User)),
            "operations": s.scalar(select(func.count()).select_from(Operation)),
            "jobs": s.scalar(text("SELECT count(*) FROM procrastinate_jobs")),
        }


def test_signup_is_accepted_with_operation_url(client):
    response = client.post("/v1/signup", json=signup_body(), headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 202
    body = response.json()
    assert body["tenant"]["status"] == "PENDING"
    assert body["operation"]["url"] == f"/v1/operations/{body['operation']['id']}"
    assert response.headers["location"] == body["operation"]["url"]


def test_same_key_same_body_returns_same_result_and_creates_nothing(client, services):
    body, key = signup_body(), uuid.uuid4().hex
    first = client.post("/v1/signup", json=body, headers={"Idempotency-Key": key})
    before = _counts(services)
    second = client.post("/v1/signup", json=body, headers={"Idempotency-Key": key})
    assert second.status_code == 202
    assert second.json()["tenant"]["id"] == first.json()["tenant"]["id"]
    assert second.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert _counts(services) == before


def test_same_key_different_body_is_refused(client, services):
    key = uuid.uuid4().hex
    assert client.post("/v1/signup", json=signup_body(), headers={"Idempotency-Key": key}).status_code == 202
    before = _counts(services)
    response = client.post("/v1/signup", json=signup_body(), headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert _counts(services) == before


def test_missing_idempotency_key_is_a_validation_problem(client):
    response = client.post("/v1/signup", json=signup_body())
    assert response.status_code == 422
    assert any(e["location"] == ["header", "Idempotency-Key"] for e in response.json()["errors"])


def test_duplicate_slug_conflicts(client):
    slug = unique_slug()
    assert client.post("/v1/signup", json=signup_body(slug), headers={"Idempotency-Key": uuid.uuid4().hex}).status_code == 202
    other = signup_body(slug, owner_email=f"someone-else@{uuid.uuid4().hex[:6]}.example.com")
    response = client.post("/v1/signup", json=other, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/duplicate-slug"
    assert slug in response.json()["detail"]


def test_bad_slug_unknown_tier_and_weak_password_have_clear_messages(client):
    cases = [
        (signup_body("Bad_Slug!", owner_email="owner@bad-slug.example.com"), "/problems/invalid-slug", "DNS-1123"),
        (signup_body(tier="platinum"), "/problems/unknown-tier", "known tiers: low, mid, high, business"),
        (signup_body(owner_password="short"), "/problems/weak-password", "at least 12 characters"),
    ]
    for body, problem_type, phrase in cases:
        response = client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 422, body
        assert response.json()["type"] == problem_type
        assert phrase in response.json()["detail"]


def test_paid_signup_waits_for_payment_then_reaches_active(client, services, driver, stripe_requests):
    """mid has no trial: nothing is provisioned until Stripe's signed invoice.paid arrives."""
    body = signup_body(tier="mid")
    accepted = client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).json()
    tenant_id = uuid.UUID(accepted["tenant"]["id"])
    run_queue(services)

    headers = login(client, body["owner_email"], STRONG_PASSWORD)
    waiting = client.get(accepted["operation"]["url"], headers=headers).json()
    assert waiting["status"] == "AWAITING_PAYMENT"
    assert {s["name"]: s["status"] for s in waiting["steps"]}["payment"] == "waiting"
    assert (tenant_id, "shared:eu1") not in driver.stacks
    payment = client.get(f"/v1/tenants/{tenant_id}/billing/payment", headers=headers)
    assert payment.status_code == 200 and payment.json()["subscription_status"] == "incomplete"

    pay_first_invoice(client, services, tenant_id)
    tenant = client.get(f"/v1/tenants/{tenant_id}", headers=headers).json()
    assert tenant["status"] == "ACTIVE"
    operation = client.get(accepted["operation"]["url"], headers=headers).json()
    assert operation["status"] == "SUCCEEDED"
    assert [s["name"] for s in operation["steps"]] == [
        "tenant_record", "billing", "payment", "license", "stack_up", "tenant_secrets", "readiness", "activate"]
    assert {e["type"] for e in operation["events"]} >= {"preludeEvent", "summaryEvent"}
    assert driver.stacks[(tenant_id, "shared:eu1")]["environments"] == ["dev", "prod"]
    with services.db.transaction(Scope.system()) as s:
        assert s.scalar(select(func.count()).select_from(License).where(License.tenant_id == tenant_id)) == 1
        assert s.get(Tenant, tenant_id).billing_customer_id.startswith("cus_")
    assert _creates(stripe_requests, accepted["operation"]["id"]) == {
        "/v1/customers": [f"{accepted['operation']['id']}:billing:customer"],
        "/v1/subscriptions": [f"{accepted['operation']['id']}:billing:subscription"],
    }


def _creates(stripe_requests, operation_id: str) -> dict[str, list[str]]:
    """The customer and subscription creates this operation sent (other tests' jobs share the queue)."""
    return {
        path: [r.idempotency_key for r in stripe_requests.posts(path) if (r.idempotency_key or "").startswith(operation_id)]
        for path in ("/v1/customers", "/v1/subscriptions")
    }
