"""Sessions: refresh-token rotation and reuse detection, logout, access tokens revoked by jti
on the very next request, password change and reset, against the real PostgreSQL and OpenBao."""

from __future__ import annotations

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import jwt
import psycopg
from sqlalchemy import select

from api.auth.roles import TenantRole
from api.auth.sessions import purge_expired
from api.auth.users import create_user
from api.db.models import (
    AccessToken, AuditRecord, AuthSession, KeyPurpose, Membership, RefreshToken, Tenant, TenantStatus,
)
from api.db.session import Scope
from api.mail import read_maildir
from api.settings import libpq_dsn
from tests.api.conftest import STRONG_PASSWORD, SignedUp, login, new_address, unique_slug

NEW_PASSWORD = "another-long-passphrase-97"


def new_organisation(client, services) -> SignedUp:
    """An active tenant and its owner, written directly: no signup job is left in the queue
    for a later test's worker to run with that test's stack driver."""
    slug = unique_slug("s")
    email = f"owner@{slug}.example.com"
    with services.db.transaction(Scope.system()) as session:
        tenant = Tenant(slug=slug, name=f"Org {slug}", tier="low", status=TenantStatus.ACTIVE.value,
                        placement="shared:eu1")
        session.add(tenant)
        owner = create_user(session, email, STRONG_PASSWORD)
        session.add(Membership(user_id=owner.id, tenant_id=tenant.id, role=TenantRole.OWNER.value))
    return SignedUp(str(tenant.id), "", slug, email, login(client, email))


def login_pair(client, email: str, password: str = STRONG_PASSWORD) -> dict:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def me(client, pair: dict) -> int:
    return client.get("/v1/auth/me", headers=bearer(pair)).status_code


def refresh(client, pair: dict):
    return client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})


def claims(pair: dict) -> dict:
    return jwt.decode(pair["access_token"], options={"verify_signature": False})


def audit(services, action: str, resource: str) -> list[AuditRecord]:
    with services.db.transaction(Scope.system()) as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.action == action,
                                                              AuditRecord.resource == resource)))


def owner_sql(database, statement: str, *params) -> None:
    with psycopg.connect(libpq_dsn(database.url(database.owner))) as connection:
        connection.execute(statement, params)


def last_mail_to(settings, email: str) -> str | None:
    messages = [m for m in read_maildir(settings.data_dir / "outbox") if m["To"] == email]
    return messages[-1].get_payload(decode=True).decode() if messages else None


def token_in(mail: str) -> str:
    return re.search(r"token=([A-Za-z0-9_-]+)", mail).group(1)


def test_login_returns_a_refresh_token_kept_only_as_its_hash(client, services, settings):
    tenant = new_organisation(client, services)
    pair = login_pair(client, tenant.email)
    assert pair["refresh_expires_in"] == settings.refresh_token_ttl_seconds and len(pair["refresh_token"]) >= 43
    sid, jti = claims(pair)["sid"], claims(pair)["jti"]
    with services.db.transaction(Scope.system()) as session:
        stored = session.scalars(select(RefreshToken).where(RefreshToken.session_id == uuid.UUID(sid))).one()
        assert pair["refresh_token"].encode() not in stored.token_sha256 and len(stored.token_sha256) == 32
        assert session.get(AccessToken, jti).session_id == uuid.UUID(sid)
    assert audit(services, "auth.login", f"user:{claims(pair)['sub']}")[-1].details == {"session_id": sid}


def test_refresh_rotates_within_the_session_and_each_token_works_once(client, services):
    tenant = new_organisation(client, services)
    first = login_pair(client, tenant.email)
    rotated = refresh(client, first)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert claims(second)["sid"] == claims(first)["sid"] and claims(second)["jti"] != claims(first)["jti"]
    assert claims(second)["memberships"] == [{"tenant": tenant.tenant_id, "role": "owner"}]
    assert me(client, second) == 200
    third = refresh(client, second)
    assert third.status_code == 200 and me(client, third.json()) == 200
    assert audit(services, "auth.refresh", f"session:{claims(first)['sid']}")


def rewind_use(database, pair: dict, seconds: float) -> None:
    """As if ``seconds`` had passed since the pair's refresh token was used."""
    owner_sql(database, "UPDATE refresh_tokens SET used_at = used_at - make_interval(secs => %s)"
                        " WHERE session_id = %s AND used_at IS NOT NULL", seconds, claims(pair)["sid"])


def test_a_reused_refresh_token_revokes_the_whole_session_at_once(client, services, settings, database):
    tenant = new_organisation(client, services)
    stolen = login_pair(client, tenant.email)
    elsewhere = login_pair(client, tenant.email)  # another session of the same user
    legit = refresh(client, stolen).json()  # the token is used; a copy of it is replayed later:
    rewind_use(database, stolen, settings.refresh_token_reuse_interval_seconds + 1)
    replay = refresh(client, stolen)
    assert replay.status_code == 401 and replay.json()["type"] == "/problems/invalid-refresh-token"
    assert me(client, legit) == 401 and me(client, stolen) == 401  # every access token of the family
    assert refresh(client, legit).status_code == 401  # and its newest refresh token
    assert me(client, elsewhere) == 200 and refresh(client, elsewhere).status_code == 200
    sid = claims(stolen)["sid"]
    (record,) = audit(services, "auth.refresh_reuse", f"session:{sid}")
    assert record.result == "denied" and record.details == {"access_tokens_revoked": 2}
    assert stolen["refresh_token"] not in str(record.details)
    with services.db.transaction(Scope.system()) as session:
        assert session.get(AuthSession, uuid.UUID(sid)).revoked_reason == "refresh_reuse"


def test_concurrent_refreshes_with_one_token_get_the_same_successor_and_keep_the_session(
    services, app_clients
):
    """A client retrying a refresh whose answer it lost, or two requests renewing at once: the
    second presentation within the reuse interval is not a theft."""
    clients = [app_clients(services.settings, services, new_address()) for _ in range(2)]
    tenant = new_organisation(clients[0], services)
    pair = login_pair(clients[0], tenant.email)
    start = threading.Barrier(len(clients))

    def renew(client):
        start.wait()
        return refresh(client, pair)

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        answers = list(pool.map(renew, clients))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = (a.json() for a in answers)
    assert first["refresh_token"] == second["refresh_token"] != pair["refresh_token"]
    assert claims(first)["jti"] != claims(second)["jti"] and claims(first)["sid"] == claims(second)["sid"]
    assert me(clients[0], first) == 200 and me(clients[0], second) == 200
    assert refresh(clients[0], first).status_code == 200  # the successor works, once
    sid = claims(pair)["sid"]
    assert audit(services, "auth.refresh_reuse", f"session:{sid}") == []
    details = sorted(str(r.details) for r in audit(services, "auth.refresh", f"session:{sid}"))
    assert details == ["{'repeated': True}", "{}", "{}"]
    with services.db.transaction(Scope.system()) as session:
        assert session.get(AuthSession, uuid.UUID(sid)).revoked_at is None


def test_a_repeat_within_the_interval_after_the_successor_was_used_is_refused_and_ends_nothing(client, services):
    tenant = new_organisation(client, services)
    first = login_pair(client, tenant.email)
    second = refresh(client, first).json()
    third = refresh(client, second).json()
    late = refresh(client, first)  # its successor has moved on: nothing to hand out again
    assert late.status_code == 401 and "already used" in late.json()["detail"]
    assert me(client, third) == 200 and refresh(client, third).status_code == 200
    assert audit(services, "auth.refresh_reuse", f"session:{claims(first)['sid']}") == []


def test_the_successor_is_kept_sealed_and_forgotten_after_the_reuse_interval(client, services, settings):
    tenant = new_organisation(client, services)
    first = login_pair(client, tenant.email)
    second = refresh(client, first).json()
    sid = uuid.UUID(claims(first)["sid"])
    with services.db.transaction(Scope.system()) as session:
        used = session.scalars(select(RefreshToken).where(RefreshToken.session_id == sid,
                                                          RefreshToken.used_at.is_not(None))).one()
        assert used.successor_sealed and second["refresh_token"].encode() not in used.successor_sealed
        purge_expired(session, settings, used.used_at + timedelta(seconds=1))
    with services.db.transaction(Scope.system()) as session:
        assert session.get(RefreshToken, used.token_sha256).successor_sealed is not None  # still within
        later = used.used_at + timedelta(seconds=settings.refresh_token_reuse_interval_seconds)
        purge_expired(session, settings, later)
    with services.db.transaction(Scope.system()) as session:
        assert session.get(RefreshToken, used.token_sha256).successor_sealed is None


def test_logout_ends_the_callers_session_only(client, services):
    tenant = new_organisation(client, services)
    leaving, staying = login_pair(client, tenant.email), login_pair(client, tenant.email)
    response = client.post("/v1/auth/logout", headers=bearer(leaving))
    assert response.status_code == 204
    assert me(client, leaving) == 401 and refresh(client, leaving).status_code == 401
    detail = client.get("/v1/auth/me", headers=bearer(leaving)).json()["detail"]
    assert detail.startswith("The access token has been revoked")
    assert me(client, staying) == 200
    assert audit(services, "auth.logout", f"session:{claims(leaving)['sid']}")


def test_unknown_and_expired_refresh_tokens_are_refused(client, services, database):
    tenant = new_organisation(client, services)
    assert client.post("/v1/auth/refresh", json={"refresh_token": "not-a-token"}).status_code == 401
    pair = login_pair(client, tenant.email)
    owner_sql(database, "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE session_id = %s",
              claims(pair)["sid"])
    expired = refresh(client, pair)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert client.post("/v1/auth/refresh", json={}).status_code == 422


def test_a_signed_token_without_session_or_jti_is_refused(client, services):
    tenant = new_organisation(client, services)
    valid = claims(login_pair(client, tenant.email))
    for missing in ("sid", "jti"):
        forged = {k: v for k, v in valid.items() if k != missing}
        token = services.keys.sign(KeyPurpose.ACCESS, forged).token  # signed by the real key
        assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401, missing
    token = services.keys.sign(KeyPurpose.ACCESS, valid).token
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_purge_keeps_what_still_denies_or_authenticates(client, services, settings):
    tenant = new_organisation(client, services)
    live, revoked = login_pair(client, tenant.email), login_pair(client, tenant.email)
    assert client.post("/v1/auth/logout", headers=bearer(revoked)).status_code == 204
    live_sid, revoked_sid = uuid.UUID(claims(live)["sid"]), uuid.UUID(claims(revoked)["sid"])
    with services.db.transaction(Scope.system()) as session:
        purge_expired(session, settings, datetime.now(UTC))  # the revoked token still denies
        assert session.get(AccessToken, claims(revoked)["jti"]).revoked_at is not None
    later = datetime.now(UTC) + timedelta(seconds=settings.access_token_ttl_seconds + 5)
    with services.db.transaction(Scope.system()) as session:
        purge_expired(session, settings, later)
        assert session.get(AuthSession, revoked_sid) is None
        assert session.get(AccessToken, claims(revoked)["jti"]) is None
        assert session.get(AuthSession, live_sid) is not None  # its refresh token lives on
    assert refresh(client, live).status_code == 200


def test_password_change_ends_the_other_sessions(client, services):
    tenant = new_organisation(client, services)
    here, other = login_pair(client, tenant.email), login_pair(client, tenant.email)
    body = {"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/v1/auth/password", json=body, headers=bearer(here)).status_code == 204
    assert me(client, other) == 401 and refresh(client, other).status_code == 401
    assert me(client, here) == 200 and refresh(client, here).status_code == 200
    assert client.post("/v1/auth/login", json={"email": tenant.email, "password": STRONG_PASSWORD}).status_code == 401
    login_pair(client, tenant.email, NEW_PASSWORD)
    (record,) = audit(services, "auth.password_change", f"user:{claims(here)['sub']}")
    assert record.details == {"sessions_revoked": 2}  # the other login and the fixture's
    assert NEW_PASSWORD not in str(record.details) and STRONG_PASSWORD not in str(record.details)


def test_password_change_needs_the_current_password_and_a_strong_new_one(client, services):
    tenant = new_organisation(client, services)
    pair = login_pair(client, tenant.email)
    wrong = client.post("/v1/auth/password", headers=bearer(pair),
                        json={"current_password": "not-the-password-1", "new_password": NEW_PASSWORD})
    assert wrong.status_code == 403 and wrong.json()["type"] == "/problems/wrong-password"
    weak = client.post("/v1/auth/password", headers=bearer(pair),
                       json={"current_password": STRONG_PASSWORD, "new_password": "short"})
    assert weak.status_code == 422 and weak.json()["type"] == "/problems/weak-password"
    assert client.post("/v1/auth/password", json={"current_password": "x", "new_password": "y"}).status_code == 401
    login_pair(client, tenant.email)  # unchanged
    assert me(client, pair) == 200


def test_password_reset_answers_alike_for_unknown_emails_and_mails_only_real_accounts(client, services, settings):
    tenant = new_organisation(client, services)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    known_answer = client.post("/v1/auth/password-reset", json={"email": tenant.email})
    unknown_answer = client.post("/v1/auth/password-reset", json={"email": unknown})
    assert known_answer.status_code == unknown_answer.status_code == 202
    assert known_answer.json() == unknown_answer.json()
    assert last_mail_to(settings, unknown) is None
    assert "/console/reset-password#token=" in last_mail_to(settings, tenant.email)
    assert audit(services, "auth.password_reset_request", "user")[-1].result == "rejected"


def test_a_reset_link_sets_the_password_once_and_ends_every_session(client, services, settings):
    tenant = new_organisation(client, services)
    pair = login_pair(client, tenant.email)
    assert client.post("/v1/auth/password-reset", json={"email": tenant.email}).status_code == 202
    token = token_in(last_mail_to(settings, tenant.email))
    weak = client.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": "weak"})
    assert weak.status_code == 422  # and the link is not used up by it:
    confirmed = client.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert confirmed.status_code == 204, confirmed.text
    again = client.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD + "x"})
    assert again.status_code == 400 and again.json()["type"] == "/problems/invalid-link"
    assert me(client, pair) == 401 and refresh(client, pair).status_code == 401
    assert client.post("/v1/auth/login", json={"email": tenant.email, "password": STRONG_PASSWORD}).status_code == 401
    login_pair(client, tenant.email, NEW_PASSWORD)
    (record,) = audit(services, "auth.password_reset", f"user:{claims(pair)['sub']}")
    assert record.details == {"sessions_revoked": 2} and token not in str(record.details)


def test_an_expired_reset_link_is_refused(client, services, settings, database):
    tenant = new_organisation(client, services)
    client.post("/v1/auth/password-reset", json={"email": tenant.email})
    token = token_in(last_mail_to(settings, tenant.email))
    owner_sql(database, "UPDATE one_time_links SET expires_at = now() - interval '1 second'"
                        " WHERE purpose = 'reset_password' AND used_at IS NULL")
    expired = client.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert expired.status_code == 400 and "expired" in expired.json()["detail"]
    login_pair(client, tenant.email)


def test_openapi_describes_the_new_endpoints_and_their_problems(client):
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/v1/auth/refresh", "post"): {"401", "422"},
        ("/v1/auth/logout", "post"): {"401"},
        ("/v1/auth/password", "post"): {"401", "403", "422", "429"},
        ("/v1/auth/password-reset", "post"): {"422"},
        ("/v1/auth/password-reset/confirm", "post"): {"400", "422"},
        ("/v1/tenants/{tenant_id}/invitations", "post"): {"403", "404", "409", "422"},
        ("/v1/invitations/accept", "post"): {"400", "401", "403", "409", "422"},
        ("/v1/tenants/{tenant_id}/members/{user_id}", "patch"): {"403", "404", "409"},
        ("/v1/tenants/{tenant_id}/members/{user_id}", "delete"): {"403", "404", "409"},
    }
    for (path, method), problems in expected.items():
        responses = paths[path][method]["responses"]
        assert problems <= set(responses), (path, method)
        assert all("application/problem+json" in responses[code]["content"] for code in problems), (path, method)
    login = paths["/v1/auth/login"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert login.endswith("/TokenResponse")
