"""Login throttling: lockout per account and per client address, unknown accounts answered
and counted like known ones, lockouts audited, concurrent failures all counted.

Each test logs in from a client address of its own, so that its failures never throttle
the other tests (whose TestClient is "testclient"). Time passing is simulated by moving
the stored window and lock back, as the throttle compares them with the request's time.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from api.auth import passwords
from api.auth.signing import SigningUnavailable
from api.auth.throttle import Limit, LoginThrottle, purge_expired
from api.db.models import LoginAttempt, LoginAttemptKind
from api.db.session import Scope
from api.settings import libpq_dsn
from tests.api.conftest import STRONG_PASSWORD, new_address, sign_up

WRONG = "not-the-password-1"
NEW_PASSWORD = "another-long-passphrase-97"
AT_ONCE = 12  # requests released together, more than any maximum of failures


@pytest.fixture
def from_address(services, app_clients) -> Callable[..., TestClient]:
    """Clients of the app, each from a client address no other test uses (or the one given)."""
    return lambda address=None: app_clients(services.settings, services, address or new_address())


class VerifySpy:
    """The password hasher, noting which hash each verification ran against."""

    def __init__(self, hasher) -> None:
        self.hasher, self.hashes = hasher, []

    def verify(self, hash_: str, password: str) -> bool:
        self.hashes.append(hash_)
        return self.hasher.verify(hash_, password)

    def __getattr__(self, name: str):
        return getattr(self.hasher, name)


def _login(client: TestClient, email: str, password: str):
    return client.post("/v1/auth/login", json={"email": email, "password": password})


def _fail(client: TestClient, email: str, times: int) -> list[int]:
    return [_login(client, email, WRONG).status_code for _ in range(times)]


def _assert_locked(response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/too-many-login-attempts"
    assert 0 < int(response.headers["retry-after"]) <= 900


def _rewind(database, key: str, seconds: int) -> None:
    """As if ``seconds`` had passed for ``key``'s failures and lock."""
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        conn.execute("UPDATE login_attempts SET window_started_at = window_started_at - make_interval(secs => %s),"
                     " locked_until = locked_until - make_interval(secs => %s) WHERE key = %s",
                     (seconds, seconds, key))


def _audited(services, action: str, resource: str) -> list[tuple]:
    with services.db.transaction(Scope.system()) as session:
        return session.execute(text("SELECT details, source_ip, result FROM audit_log"
                                    " WHERE action = :action AND resource = :resource"),
                               {"action": action, "resource": resource}).all()


def test_five_wrong_passwords_lock_the_account_even_for_the_right_password(services, from_address):
    client = from_address()
    tenant = sign_up(client, services)
    assert _fail(client, tenant.email, 5) == [401] * 5
    _assert_locked(_login(client, tenant.email, STRONG_PASSWORD))
    _assert_locked(_login(client, tenant.email, WRONG))
    # the account is locked, not only this address
    _assert_locked(_login(from_address(), tenant.email, STRONG_PASSWORD))


def test_the_lock_ends_and_counting_starts_afresh(services, from_address, database):
    client = from_address()
    tenant = sign_up(client, services)
    _fail(client, tenant.email, 5)
    _assert_locked(_login(client, tenant.email, STRONG_PASSWORD))
    _rewind(database, tenant.email, 901)
    assert _login(client, tenant.email, STRONG_PASSWORD).status_code == 200
    with services.db.transaction(Scope.system()) as session:
        assert session.get(LoginAttempt, ("account", tenant.email)) is None
    assert _fail(client, tenant.email, 4) == [401] * 4
    assert _login(client, tenant.email, STRONG_PASSWORD).status_code == 200


def test_a_successful_login_resets_the_account_count(services, from_address):
    client = from_address()
    tenant = sign_up(client, services)
    assert _fail(client, tenant.email, 4) == [401] * 4
    assert _login(client, tenant.email, STRONG_PASSWORD).status_code == 200
    assert _fail(client, tenant.email, 4) == [401] * 4
    assert _login(client, tenant.email, STRONG_PASSWORD).status_code == 200


def test_an_address_is_throttled_across_accounts(services, settings, from_address):
    address = new_address()
    client = from_address(address)
    tenant = sign_up(client, services)
    limit = settings.login_address_max_failures
    statuses = [_login(client, f"nobody-{uuid.uuid4().hex[:8]}@example.com", WRONG).status_code for _ in range(limit)]
    assert statuses == [401] * limit
    _assert_locked(_login(client, tenant.email, STRONG_PASSWORD))
    # the account itself is not locked: another address logs in
    assert _login(from_address(), tenant.email, STRONG_PASSWORD).status_code == 200
    lockouts = _audited(services, "auth.lockout", f"address:{address}")
    assert len(lockouts) == 1 and lockouts[0].details["kind"] == "address"


def test_an_unknown_account_answers_like_a_wrong_password_and_verifies_a_hash(services, from_address, monkeypatch):
    client = from_address()
    tenant = sign_up(client, services)
    spy = VerifySpy(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", spy)
    known = _login(client, tenant.email, WRONG)
    unknown = _login(client, f"nobody-{uuid.uuid4().hex[:8]}@example.com", WRONG)
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json()) and known.status_code == 401
    assert unknown.headers["www-authenticate"] == known.headers["www-authenticate"]
    assert len(spy.hashes) == 2 and spy.hashes[1] == passwords._DUMMY_HASH != spy.hashes[0]


def test_an_unknown_account_is_locked_like_a_known_one(services, from_address):
    client = from_address()
    tenant = sign_up(client, services)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    assert _fail(client, tenant.email, 5) == _fail(client, unknown, 5) == [401] * 5
    locked_known, locked_unknown = _login(client, tenant.email, WRONG), _login(client, unknown, WRONG)
    _assert_locked(locked_known)
    _assert_locked(locked_unknown)
    assert locked_known.json() == locked_unknown.json()


def test_a_lockout_is_audited_once_without_the_password(services, from_address):
    address = new_address()
    client = from_address(address)
    tenant = sign_up(client, services)
    _fail(client, tenant.email, 5)
    _login(client, tenant.email, STRONG_PASSWORD)
    lockouts = _audited(services, "auth.lockout", f"account:{tenant.email}")
    assert len(lockouts) == 1
    details, source_ip, _ = lockouts[0]
    assert details["kind"] == "account" and details["locked_until"]
    assert source_ip == address
    assert STRONG_PASSWORD not in json.dumps(details) and WRONG not in json.dumps(details)


def test_concurrent_failures_are_all_counted_and_lock_once(services):
    key = f"race-{uuid.uuid4().hex[:8]}@example.com"
    now = datetime.now(UTC)
    lenient = Limit(1000, timedelta(minutes=15), timedelta(minutes=15))
    strict = Limit(10, timedelta(minutes=15), timedelta(minutes=15))
    throttle = LoginThrottle({LoginAttemptKind.ACCOUNT: strict, LoginAttemptKind.ADDRESS: lenient},
                             {LoginAttemptKind.ACCOUNT: key, LoginAttemptKind.ADDRESS: f"race:{key}"}, now)

    def fail_once(_: int) -> int:
        with services.db.transaction(Scope.system()) as session:
            return len(throttle.record_failure(session))

    with ThreadPoolExecutor(max_workers=8) as pool:
        lockouts = list(pool.map(fail_once, range(24)))
    assert sum(lockouts) == 1
    with services.db.transaction(Scope.system()) as session:
        address = session.scalars(select(LoginAttempt).where(LoginAttempt.key == f"race:{key}")).one()
        account = session.get(LoginAttempt, ("account", key))
    assert address.failures == 24
    assert account.locked_until == now + strict.lockout and account.failures == 0


def test_concurrent_logins_get_at_most_the_maximum_of_password_checks(services, settings, from_address, monkeypatch):
    client = from_address()
    tenant = sign_up(client, services)
    spy = VerifySpy(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", spy)
    statuses = _all_at_once(AT_ONCE, lambda: _login(client, tenant.email, WRONG).status_code)
    limit = settings.login_account_max_failures
    assert statuses == [401] * limit + [429] * (AT_ONCE - limit)
    assert len(spy.hashes) == limit
    assert len(_audited(services, "auth.lockout", f"account:{tenant.email}")) == 1


def _all_at_once(count: int, request: Callable[[], int]) -> list[int]:
    """``count`` requests released together from as many threads; their statuses, sorted."""
    start = threading.Barrier(count)

    def one(_: int) -> int:
        start.wait()
        return request()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return sorted(pool.map(one, range(count)))


def test_a_successful_login_takes_back_its_attempt_on_the_address(services, from_address, monkeypatch):
    address = new_address()
    client = from_address(address)
    tenant = sign_up(client, services)
    monkeypatch.setattr(services.settings, "login_address_max_failures", 3)
    unknown = [f"nobody-{uuid.uuid4().hex[:8]}@example.com" for _ in range(3)]
    assert [_login(client, email, WRONG).status_code for email in unknown[:2]] == [401, 401]
    # the third attempt reaches the address's maximum each time, and is taken back when right
    assert [_login(client, tenant.email, STRONG_PASSWORD).status_code for _ in range(3)] == [200] * 3
    assert _audited(services, "auth.lockout", f"address:{address}") == []
    assert _login(client, unknown[2], WRONG).status_code == 401
    _assert_locked(_login(client, tenant.email, STRONG_PASSWORD))
    assert len(_audited(services, "auth.lockout", f"address:{address}")) == 1


def test_the_purge_deletes_only_rows_that_no_longer_count_or_lock(services, settings):
    now = datetime.now(UTC)
    stale, locked = f"stale-{uuid.uuid4().hex[:8]}@example.com", f"locked-{uuid.uuid4().hex[:8]}@example.com"
    with services.db.transaction(Scope.system()) as session:
        LoginThrottle.of(settings, stale, new_address(), now - timedelta(hours=1)).record_failure(session)
        locking = LoginThrottle.of(settings, locked, new_address(), now - timedelta(minutes=20))
        for _ in range(settings.login_account_max_failures):
            locking.record_failure(session)
        purge_expired(session, settings, now)
    with services.db.transaction(Scope.system()) as session:
        assert session.get(LoginAttempt, ("account", stale)) is None
        assert session.get(LoginAttempt, ("account", locked)) is not None  # its lock ended 5 minutes ago
        assert session.get(LoginAttempt, ("address", locking.keys[LoginAttemptKind.ADDRESS])) is None


def test_openapi_declares_the_429_problem_with_retry_after(client):
    responses = client.get("/openapi.json").json()["paths"]["/v1/auth/login"]["post"]["responses"]
    assert "application/problem+json" in responses["429"]["content"]
    assert "Retry-After" in responses["429"]["headers"]


def test_concurrent_wrong_current_passwords_get_at_most_the_maximum_of_password_checks(
    services, settings, from_address, monkeypatch
):
    client = from_address()
    tenant = sign_up(client, services)
    spy = VerifySpy(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", spy)
    statuses = _all_at_once(AT_ONCE, lambda: client.post(
        "/v1/auth/password", headers=tenant.headers,
        json={"current_password": WRONG, "new_password": NEW_PASSWORD}).status_code)
    limit = settings.login_account_max_failures
    assert statuses == [403] * limit + [429] * (AT_ONCE - limit)
    assert len(spy.hashes) == limit
    assert len(_audited(services, "auth.lockout", f"account:{tenant.email}")) == 1


def test_a_right_current_password_with_a_weak_new_one_counts_nothing(services, settings, from_address):
    client = from_address()
    tenant = sign_up(client, services)
    for _ in range(settings.login_account_max_failures):
        weak = client.post("/v1/auth/password", headers=tenant.headers,
                           json={"current_password": STRONG_PASSWORD, "new_password": "short"})
        assert weak.status_code == 422
    assert _login(client, tenant.email, STRONG_PASSWORD).status_code == 200


def test_a_right_password_whose_sign_in_then_fails_never_counts_toward_the_lockout(
    services, settings, from_address, monkeypatch
):
    """The attempt is counted in a transaction of its own before the password check; the
    session that a right password starts cannot be signed (the secrets server is down): the
    attempt is taken back all the same."""
    address = new_address()
    client = from_address(address)
    tenant = sign_up(client, services)

    def unavailable(*args, **kwargs):
        raise SigningUnavailable("the secrets server is down (test)")

    monkeypatch.setattr(services.keys, "sign", unavailable)
    tries = settings.login_account_max_failures
    assert [_login(client, tenant.email, STRONG_PASSWORD).status_code for _ in range(tries)] == [503] * tries
    monkeypatch.undo()
    assert _login(client, tenant.email, STRONG_PASSWORD).status_code == 200
    with services.db.transaction(Scope.system()) as session:
        assert session.get(LoginAttempt, ("account", tenant.email)) is None
        assert session.get(LoginAttempt, ("address", address)).failures == 0
    assert _audited(services, "auth.lockout", f"account:{tenant.email}") == []
