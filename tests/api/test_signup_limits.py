"""Signup limits: per client address and per email domain (shared by every API process, here
two app instances on one database), per signed-in user, and the caps on pending signups;
each lock audited once, refused requests not one by one.

Each test signs up from client addresses and email domains of its own, with low limits set
on its own apps, so that it never throttles the other tests.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from api.db.models import PendingSignup
from api.db.session import Database, Scope
from api.settings import libpq_dsn
from tests.api.conftest import new_address, sign_up, signup_body, unique_slug, verification_token, verify

LIMITS = {"signup_address_max": 3, "signup_address_window_seconds": 3600,
          "signup_domain_max": 4, "signup_domain_window_seconds": 86400,
          "signup_user_max": 2, "signup_user_window_seconds": 86400,
          "signup_pending_domain_max": 1_000, "signup_pending_max": 1_000_000}


@pytest.fixture
def limited(services, app_clients) -> Callable[..., TestClient]:
    """Apps with low signup limits (``LIMITS`` and overrides), each a separate instance with
    its own connections to the session's database, called from ``address``."""

    def make(address: str, **overrides) -> TestClient:
        low = services.settings.model_copy(update={**LIMITS, **overrides})
        own = dataclasses.replace(services, settings=low, db=Database.from_settings(low))  # its own connection pools
        return app_clients(low, own, address)

    return make


def new_domain() -> str:
    return f"{uuid.uuid4().hex[:10]}.example.org"


def _signup(client: TestClient, domain: str | None = None):
    domain = domain or new_domain()
    body = signup_body(owner_email=f"{uuid.uuid4().hex[:8]}@{domain}")
    return client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def _assert_throttled(response, problem: str, at_most: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"/problems/{problem}"
    assert 0 < int(response.headers["retry-after"]) <= at_most


def _audited(services, action: str, resource_prefix: str) -> list[tuple]:
    with services.db.transaction(Scope.system()) as session:
        return session.execute(text("SELECT resource, details, result FROM audit_log"
                                    " WHERE action = :action AND resource LIKE :prefix"),
                               {"action": action, "prefix": resource_prefix + "%"}).all()


def test_an_address_is_limited_across_two_api_processes(services, limited):
    address = new_address()
    first, second = limited(address), limited(address)
    statuses = [_signup(client).status_code for client in (first, second, first)]
    assert statuses == [202, 202, 202]
    for client in (second, first, second):
        _assert_throttled(_signup(client), "too-many-signups", 3600)
    assert _signup(limited(new_address())).status_code == 202  # other addresses sign up on
    [(resource, details, result)] = _audited(services, "signup.rate_limited", f"signup_address:{address}")
    assert details["kind"] == "signup_address" and result == "denied"
    with services.db.transaction(Scope.system()) as session:  # the refused requests left no record each
        assert session.scalar(text("SELECT count(*) FROM audit_log WHERE source_ip = :address"
                                   " AND action = 'http.post'"), {"address": address}) == 0


def test_an_email_domain_is_limited_across_addresses_and_processes(services, limited):
    domain = new_domain()
    statuses = [_signup(limited(new_address()), domain).status_code for _ in range(4)]
    assert statuses == [202] * 4
    _assert_throttled(_signup(limited(new_address()), domain), "too-many-signups", 86400)
    assert _signup(limited(new_address())).status_code == 202  # another domain
    assert len(_audited(services, "signup.rate_limited", f"signup_domain:{domain}")) == 1


def test_an_existing_account_is_counted_and_answered_like_a_new_one(client, services, limited):
    known = sign_up(client, services, activate=False)
    address = new_address()
    app = limited(address, signup_address_max=2)
    body = signup_body(owner_email=known.email)
    answers = [app.post("/v1/signup", json=b, headers={"Idempotency-Key": uuid.uuid4().hex})
               for b in (body, signup_body())]
    assert [a.status_code for a in answers] == [202, 202] and answers[0].json() == answers[1].json()
    _assert_throttled(_signup(app), "too-many-signups", 3600)


def test_a_lock_ends_after_its_window(services, limited, database):
    address = new_address()
    app = limited(address, signup_address_max=1)
    assert _signup(app).status_code == 202
    _assert_throttled(_signup(app), "too-many-signups", 3600)
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        conn.execute("UPDATE login_attempts SET window_started_at = window_started_at - interval '2 hours',"
                     " locked_until = locked_until - interval '2 hours' WHERE key = %s", (address,))
    assert _signup(app).status_code == 202


def test_pending_signups_of_a_domain_are_capped_until_one_is_verified(services, settings, limited):
    domain = new_domain()
    app = limited(new_address(), signup_pending_domain_max=2, signup_domain_max=100,
                  signup_address_max=100)
    bodies = [signup_body(owner_email=f"{uuid.uuid4().hex[:8]}@{domain}") for _ in range(3)]
    posted = [app.post("/v1/signup", json=b, headers={"Idempotency-Key": uuid.uuid4().hex}) for b in bodies]
    assert [p.status_code for p in posted[:2]] == [202, 202]
    _assert_throttled(posted[2], "too-many-pending-signups", settings.signup_verification_ttl_seconds)
    assert "await" in posted[2].json()["detail"]
    assert verify(app, verification_token(settings, bodies[0]["owner_email"])).status_code == 202
    retried = app.post("/v1/signup", json=bodies[2], headers={"Idempotency-Key": uuid.uuid4().hex})
    assert retried.status_code == 202
    assert len(_audited(services, "signup.rate_limited", f"signup_pending:domain:{domain}")) == 1


def test_too_many_pending_signups_in_all_pause_signups(services, limited):
    with services.db.transaction(Scope.system()) as session:
        waiting = session.scalar(select(func.count()).select_from(PendingSignup).where(
            PendingSignup.verified_at.is_(None), PendingSignup.expires_at > func.now()))
    app = limited(new_address(), signup_pending_max=waiting + 1)
    assert _signup(app).status_code == 202
    paused = _signup(app)
    assert paused.status_code == 429 and paused.json()["type"] == "/problems/signups-paused"
    assert int(paused.headers["retry-after"]) > 0


def test_organisations_of_a_signed_in_user_are_limited(client, services, limited):
    owner = sign_up(client, services, activate=False)
    app = limited(new_address())

    def create():
        body = {"organization_name": "More", "slug": unique_slug("more"), "tier": "low"}
        return app.post("/v1/organizations", json=body, headers={**owner.headers, "Idempotency-Key": uuid.uuid4().hex})

    assert [create().status_code for _ in range(2)] == [202, 202]
    _assert_throttled(create(), "too-many-signups", 86400)
    assert len(_audited(services, "signup.rate_limited", "signup_user:")) >= 1
