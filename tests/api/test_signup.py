"""Signup: a verified email before anything is created, one tenant per link however often it
is followed, the same answer for an email that already has an account, another organisation
for a signed-in user, validation, idempotency, and the flow to ACTIVE through the real job queue."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from api.app import create_app
from api.db.models import License, Membership, Operation, PendingSignup, Tenant, User
from api.db.session import Scope
from api.settings import libpq_dsn
from api.tenants.signup_limits import purge_expired
from tests.api.conftest import (
    STRONG_PASSWORD,
    login,
    mails_to,
    pay_first_invoice,
    run_queue,
    sign_up,
    signup_and_verify,
    signup_body,
    unique_slug,
    verification_token,
    verify,
)

PROBLEM = "application/problem+json"


def _counts(services) -> dict[str, int]:
    with services.db.transaction(Scope.system()) as s:
        return {
            "tenants": s.scalar(select(func.count()).select_from(Tenant)),
            "users": s.scalar(select(func.count()).select_from(User)),
            "operations": s.scalar(select(func.count()).select_from(Operation)),
            "jobs": s.scalar(text("SELECT count(*) FROM procrastinate_jobs")),
        }


def _post(client, body, key: str | None = None):
    return client.post("/v1/signup", json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})


def _pending(services, email: str) -> list[PendingSignup]:
    with services.db.transaction(Scope.system()) as s:
        return list(s.scalars(select(PendingSignup).where(PendingSignup.email == email).order_by(PendingSignup.created_at)))


def _tenants_with_slug(services, slug: str) -> int:
    with services.db.transaction(Scope.system()) as s:
        return s.scalar(select(func.count()).select_from(Tenant).where(Tenant.slug == slug))


def test_nothing_is_created_or_provisioned_before_the_email_is_verified(client, services, settings):
    body = signup_body()
    before = _counts(services)
    response = _post(client, body)
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "verification_mailed", "detail": response.json()["detail"]}
    assert _counts(services) == before  # no tenant, user, operation or job
    [pending] = _pending(services, body["owner_email"])
    assert pending.slug == body["slug"] and not pending.account_exists
    assert STRONG_PASSWORD not in pending.password_hash and pending.password_hash.startswith("$argon2id$")
    [mail] = mails_to(settings, body["owner_email"])
    assert "/signup/verify#token=" in mail and STRONG_PASSWORD not in mail


def test_following_the_link_creates_the_tenant_owner_and_signup_operation(client, services, settings):
    body = signup_body()
    assert _post(client, body).status_code == 202
    response = verify(client, verification_token(settings, body["owner_email"]))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["tenant"]["slug"] == body["slug"] and accepted["tenant"]["status"] == "PENDING"
    assert accepted["operation"]["kind"] == "signup"
    assert response.headers["location"] == accepted["operation"]["url"] == f"/v1/operations/{accepted['operation']['id']}"
    headers = login(client, body["owner_email"])  # the password given at signup
    me = client.get("/v1/auth/me", headers=headers).json()
    assert me["memberships"] == {accepted["tenant"]["id"]: "owner"}
    assert _pending(services, body["owner_email"])[0].verified_at is not None


def test_a_link_clicked_twice_at_once_creates_one_tenant(client, services, settings):
    body = signup_body()
    assert _post(client, body).status_code == 202
    token = verification_token(settings, body["owner_email"])
    statuses: list[int] = []
    barrier = threading.Barrier(2)
    with TestClient(create_app(settings, services=services)) as other:
        def click(c: TestClient) -> None:
            barrier.wait()
            statuses.append(verify(c, token).status_code)

        threads = [threading.Thread(target=click, args=(c,)) for c in (client, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(statuses) == [202, 410]
    assert _tenants_with_slug(services, body["slug"]) == 1
    again = verify(client, token)
    assert again.status_code == 410 and again.headers["content-type"] == PROBLEM
    assert again.json()["type"] == "/problems/verification-link-invalid" and again.json()["reason"] == "already used"
    assert _tenants_with_slug(services, body["slug"]) == 1


def test_an_expired_link_is_refused_and_creates_nothing(client, services, settings, database):
    body = signup_body()
    assert _post(client, body).status_code == 202
    token = verification_token(settings, body["owner_email"])
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        conn.execute("UPDATE one_time_links SET expires_at = now() - interval '1 second' WHERE subject = %s",
                     (body["owner_email"],))
    before = _counts(services)
    response = verify(client, token)
    assert response.status_code == 410
    assert response.json()["reason"] == "expired"
    assert _counts(services) == before


def test_an_unknown_token_is_refused(client):
    response = verify(client, "x" * 43)
    assert response.status_code == 410 and response.json()["reason"] == "unknown"


def test_an_email_with_an_account_gets_the_same_answer_another_mail_and_no_second_account(client, services, settings):
    known = sign_up(client, services, activate=False)
    fresh = _post(client, signup_body())
    before = _counts(services)
    again = _post(client, signup_body(owner_email=known.email))
    assert (again.status_code, again.json()) == (fresh.status_code, fresh.json())
    assert set(again.headers) - {"x-request-id", "content-length"} == set(fresh.headers) - {"x-request-id", "content-length"}
    assert _counts(services) == before
    assert [p.account_exists for p in _pending(services, known.email)] == [False, True]
    latest = mails_to(settings, known.email)[-1]
    assert "already has an account" in latest and "#token=" not in latest
    with services.db.transaction(Scope.system()) as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.email == known.email)) == 1


def test_same_key_same_body_is_answered_alike_and_mails_once(client, services, settings):
    body, key = signup_body(), uuid.uuid4().hex
    first = _post(client, body, key)
    second = _post(client, body, key)
    assert second.status_code == 202 and second.json() == first.json()
    assert len(_pending(services, body["owner_email"])) == 1
    assert len(mails_to(settings, body["owner_email"])) == 1


def test_same_key_different_body_is_refused(client, services):
    key = uuid.uuid4().hex
    assert _post(client, signup_body(), key).status_code == 202
    other = signup_body()
    response = _post(client, other, key)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert _pending(services, other["owner_email"]) == []


def test_missing_idempotency_key_is_a_validation_problem(client):
    response = client.post("/v1/signup", json=signup_body())
    assert response.status_code == 422
    assert any(e["location"] == ["header", "Idempotency-Key"] for e in response.json()["errors"])


def test_a_taken_slug_conflicts_at_signup(client, services):
    taken = sign_up(client, services, activate=False)
    other = signup_body(taken.slug, owner_email=f"someone-else@{uuid.uuid4().hex[:6]}.example.com")
    response = _post(client, other)
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/duplicate-slug"
    assert taken.slug in response.json()["detail"]
    assert _pending(services, other["owner_email"]) == []


def test_a_slug_taken_before_the_link_is_followed_conflicts_then(client, services, settings):
    """A pending signup reserves no slug: the first verified signup gets it."""
    slug = unique_slug()
    first, second = signup_body(slug), signup_body(slug, owner_email=f"other@{uuid.uuid4().hex[:6]}.example.com")
    assert _post(client, first).status_code == 202 and _post(client, second).status_code == 202
    assert verify(client, verification_token(settings, second["owner_email"])).status_code == 202
    late = verify(client, verification_token(settings, first["owner_email"]))
    assert late.status_code == 409 and late.json()["type"] == "/problems/duplicate-slug"
    assert _tenants_with_slug(services, slug) == 1
    with services.db.transaction(Scope.system()) as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.email == first["owner_email"])) == 0


def test_bad_slug_unknown_tier_and_weak_password_have_clear_messages(client):
    cases = [
        (signup_body("Bad_Slug!", owner_email="owner@bad-slug.example.com"), "/problems/invalid-slug", "DNS-1123"),
        (signup_body(tier="platinum"), "/problems/unknown-tier", "known tiers: low, mid, high, business"),
        (signup_body(owner_password="short"), "/problems/weak-password", "at least 12 characters"),
    ]
    for body, problem_type, phrase in cases:
        response = _post(client, body)
        assert response.status_code == 422, body
        assert response.json()["type"] == problem_type
        assert phrase in response.json()["detail"]


def test_a_mail_that_cannot_be_sent_leaves_no_pending_signup(client, services, monkeypatch):
    def refuse(message) -> None:
        raise ConnectionRefusedError("relay down")

    monkeypatch.setattr(services.mailer, "send", refuse)
    body = signup_body()
    response = _post(client, body)
    assert response.status_code == 503 and response.json()["type"] == "/problems/mail-unavailable"
    assert "retry-after" in response.headers
    assert _pending(services, body["owner_email"]) == []


def test_a_signed_in_user_creates_another_organisation_and_then_holds_both(client, services):
    owner = sign_up(client, services)
    wanted, key = {"organization_name": "Second org", "slug": unique_slug("second"), "tier": "low"}, uuid.uuid4().hex
    response = client.post("/v1/organizations", json=wanted, headers={**owner.headers, "Idempotency-Key": key})
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["tenant"]["slug"] == wanted["slug"] and created["operation"]["kind"] == "signup"
    replay = client.post("/v1/organizations", json=wanted, headers={**owner.headers, "Idempotency-Key": key})
    assert replay.status_code == 202 and replay.json()["tenant"]["id"] == created["tenant"]["id"]
    run_queue(services)
    fresh_token = login(client, owner.email)
    me = client.get("/v1/auth/me", headers=fresh_token).json()
    assert me["memberships"] == {owner.tenant_id: "owner", created["tenant"]["id"]: "owner"}
    assert client.get(f"/v1/tenants/{created['tenant']['id']}", headers=fresh_token).json()["status"] == "ACTIVE"
    with services.db.transaction(Scope.system()) as s:
        assert s.scalar(select(func.count()).select_from(Membership)
                        .where(Membership.user_id == uuid.UUID(me["user_id"]))) == 2


def test_another_organisation_needs_a_token_and_a_free_slug(client, services):
    owner = sign_up(client, services, activate=False)
    wanted = {"organization_name": "Taken", "slug": owner.slug, "tier": "low"}
    anonymous = client.post("/v1/organizations", json=wanted, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert anonymous.status_code == 401
    taken = client.post("/v1/organizations", json=wanted, headers={**owner.headers, "Idempotency-Key": uuid.uuid4().hex})
    assert taken.status_code == 409 and taken.json()["type"] == "/problems/duplicate-slug"


def test_the_purge_deletes_expired_pending_signups_only(client, services, settings, database):
    expired, live = signup_body(), signup_body()
    assert _post(client, expired).status_code == 202 and _post(client, live).status_code == 202
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        conn.execute("UPDATE pending_signups SET expires_at = now() - interval '1 minute' WHERE email = %s",
                     (expired["owner_email"],))
    with services.db.transaction(Scope.system()) as session:
        assert purge_expired(session, settings, datetime.now(UTC)) >= 1
    assert _pending(services, expired["owner_email"]) == []
    assert len(_pending(services, live["owner_email"])) == 1
    # The link of a purged signup no longer creates anything.
    assert verify(client, verification_token(settings, expired["owner_email"])).status_code == 410


def test_openapi_documents_the_signup_problems(client):
    paths = client.get("/openapi.json").json()["paths"]
    signup = paths["/v1/signup"]["post"]["responses"]
    assert {"202", "409", "422", "429", "503"} <= set(signup) and "Retry-After" in signup["429"]["headers"]
    assert "/problems/signups-paused" in signup["429"]["description"]
    assert "410" in paths["/v1/signup/verify"]["post"]["responses"]
    assert {"202", "401", "409", "429"} <= set(paths["/v1/organizations"]["post"]["responses"])


def test_paid_signup_waits_for_payment_then_reaches_active(client, services, driver, stripe_requests):
    """mid has no trial: nothing is provisioned until Stripe's signed invoice.paid arrives."""
    body = signup_body(tier="mid")
    accepted = signup_and_verify(client, services, body)
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
        "place", "tenant_record", "billing", "payment", "license", "stack_up", "tenant_secrets", "readiness", "activate"]
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
