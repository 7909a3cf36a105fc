"""The abuse run at test scale (benchmarks/abuse_run.py does it at 2,000 + 2,000 against a real
API process): a flood of signups and failed logins from one address and from many, at one
email domain and at many, leaves at most what the configured limits allow (pending signups,
answered attempts per key, locks), creates no tenant, and answers no 5xx (the pending cap's
"signups paused" is a 429); a request the limits refuse anyway costs no password hash.

Addresses and domains are this test's own (the throttles count per key across the session).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from api.app import create_app
from api.auth import passwords
from api.auth.throttle import limits as login_limits
from api.auth.users import create_user
from api.db.models import PendingSignup, Tenant
from api.db.session import Scope
from api.tenants import signup as signup_module
from tests.api.conftest import STRONG_PASSWORD, new_address, signup_body
from tests.api.test_login_throttle import WRONG, _login
from tests.api.test_signup_limits import new_domain

LIMITS = {"signup_address_max": 3, "signup_domain_max": 4, "signup_pending_domain_max": 4,
          "login_account_max_failures": 3, "login_address_max_failures": 6}
PENDING_ROOM = 12  # pending signups allowed on top of those other tests left


def _waiting(services) -> int:
    with services.db.transaction(Scope.system()) as session:
        return session.scalar(select(func.count()).select_from(PendingSignup).where(
            PendingSignup.verified_at.is_(None), PendingSignup.expires_at > func.now()))


@pytest.fixture
def flood(services):
    """Clients of one app with low limits, one per client address, made on demand."""
    waiting = _waiting(services)
    low = services.settings.model_copy(update={**LIMITS, "signup_pending_max": waiting + PENDING_ROOM})
    app = create_app(low, services=dataclasses.replace(services, settings=low))
    clients: dict[str, TestClient] = {}

    def client(address: str) -> TestClient:
        if address not in clients:
            clients[address] = TestClient(app, client=(address, 50000))
        return clients[address]

    client.settings = low
    return client


def _problem(response) -> str:
    return response.json().get("type", "") if response.headers.get("content-type") == "application/problem+json" else ""


def test_a_flood_of_signups_and_failed_logins_stays_within_the_limits(services, flood, monkeypatch):
    hashes = []
    monkeypatch.setattr(signup_module, "hash_password",
                        lambda password: hashes.append(1) or passwords.hash_password(password))
    settings, started = flood.settings, datetime.now(UTC)
    with services.db.transaction(Scope.system()) as session:
        tenants_before = session.scalar(select(func.count()).select_from(Tenant))

    one_address, one_domain = new_address(), new_domain()
    signups = ([(one_address, new_domain()) for _ in range(60)]                        # one address, many domains
               + [(new_address(), one_domain) for _ in range(60)]                      # many addresses, one domain
               + [(address, new_domain()) for address in [new_address() for _ in range(40)] for _ in range(2)])
    answers: list[tuple[str, str, int, str]] = []
    for address, domain in signups:
        body = signup_body(owner_email=f"{uuid.uuid4().hex[:8]}@{domain}")
        response = flood(address).post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        answers.append((address, domain, response.status_code, _problem(response)))

    few = [new_address() for _ in range(2)]
    known = [f"abuse-{uuid.uuid4().hex[:8]}@example.org" for _ in range(5)]
    with services.db.transaction(Scope.system()) as session:
        for email in known:
            create_user(session, email, STRONG_PASSWORD)
    logins = ([(few[i % 2], f"{uuid.uuid4().hex[:8]}@{new_domain()}" if i % 3 else known[i % 5]) for i in range(100)]
              + [(new_address(), known[i % 5]) for i in range(100)])             # many addresses, few accounts
    failed = []
    for address, email in logins:
        response = _login(flood(address), email, WRONG)
        failed.append((address, email, response.status_code, _problem(response)))

    statuses = Counter(status for *_, status, _ in answers + failed)
    assert set(statuses) <= {202, 401, 429}, statuses

    accepted = [(address, domain) for address, domain, status, _ in answers if status == 202]
    per_address, per_domain = Counter(a for a, _ in accepted), Counter(d for _, d in accepted)
    assert per_address[one_address] == settings.signup_address_max
    assert per_domain[one_domain] == settings.signup_domain_max
    assert max(per_address.values()) <= settings.signup_address_max
    assert max(per_domain.values()) <= settings.signup_domain_max
    paused = [status for *_, status, problem in answers if problem == "/problems/signups-paused"]
    assert paused and set(paused) == {429}  # the cap was reached
    assert _waiting(services) <= settings.signup_pending_max
    assert len(hashes) == len(accepted)  # a request refused by the limits hashed no password

    counted = [(a, e) for a, e, status, _ in failed if status == 401]
    assert max(Counter(a for a, _ in counted).values()) <= settings.login_address_max_failures
    assert max(Counter(e for _, e in counted).values()) <= settings.login_account_max_failures
    locks = defaultdict(set)
    lockout = {kind.value: limit.lockout for kind, limit in login_limits(settings).items()}
    with services.db.transaction(Scope.system()) as session:
        for kind, key, until in session.execute(text("SELECT kind, key, locked_until FROM login_attempts"
                                                     " WHERE locked_until > now() AND kind IN ('account', 'address')")):
            if until - lockout[kind] >= started:  # locked during this test, not by the session's other tests
                locks[kind].add(key)
        tenants_after = session.scalar(select(func.count()).select_from(Tenant))
    assert set(few) <= locks["address"] and set(known) <= locks["account"]
    attacked = {address for address, *_ in failed} | {email for _, email, *_ in failed}
    assert locks["address"] | locks["account"] <= attacked | {e.lower() for e in attacked}
    assert tenants_after == tenants_before  # nothing was created, let alone provisioned
