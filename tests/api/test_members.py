"""Members: invitations for new and existing accounts, role changes and removals taking
effect on the very next request, the last owner's protection, and their audit records."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from api.db.models import Membership
from api.db.session import Scope
from tests.api.conftest import STRONG_PASSWORD
from tests.api.test_sessions import (
    audit, bearer, claims, last_mail_to, login_pair, new_organisation, owner_sql, refresh, token_in,
)

NEWCOMER_PASSWORD = "newcomer-passphrase-2026"


def invite(client, tenant, email: str, role: str, headers=None):
    return client.post(f"/v1/tenants/{tenant.tenant_id}/invitations", json={"email": email, "role": role},
                       headers=headers or tenant.headers)


def invited_token(client, settings, tenant, email: str, role: str = "developer", headers=None) -> str:
    response = invite(client, tenant, email, role, headers)
    assert response.status_code == 201, response.text
    return token_in(last_mail_to(settings, email))


def join(client, settings, tenant, role: str) -> tuple[str, dict]:
    """A new account invited and joined as ``role``: its id and a fresh login."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    token = invited_token(client, settings, tenant, email, role)
    accepted = client.post("/v1/invitations/accept", json={"token": token, "password": NEWCOMER_PASSWORD})
    assert accepted.status_code == 200, accepted.text
    return accepted.json()["user_id"], login_pair(client, email, NEWCOMER_PASSWORD)


def members_of(client, tenant) -> dict[str, str]:
    listing = client.get(f"/v1/tenants/{tenant.tenant_id}/members", headers=tenant.headers)
    return {m["user_id"]: m["role"] for m in listing.json()}


def owner_id(tenant) -> str:
    return claims({"access_token": tenant.headers["Authorization"].split()[1]})["sub"]


def test_an_invitation_creates_the_account_of_a_new_email(client, services, settings):
    tenant = new_organisation(client, services)
    email = f"New.Person-{uuid.uuid4().hex[:6]}@Example.com"
    response = invite(client, tenant, email, "developer")
    assert response.status_code == 201 and response.json()["role"] == "developer"
    mail = last_mail_to(settings, email.lower())
    assert "/console/invitations/accept#token=" in mail
    token = token_in(mail)
    missing = client.post("/v1/invitations/accept", json={"token": token})
    assert missing.status_code == 422 and missing.json()["type"] == "/problems/password-required"
    accepted = client.post("/v1/invitations/accept", json={"token": token, "password": NEWCOMER_PASSWORD})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["account_created"] is True and accepted.json()["role"] == "developer"
    pair = login_pair(client, email, NEWCOMER_PASSWORD)
    assert [t["id"] for t in client.get("/v1/tenants", headers=bearer(pair)).json()] == [tenant.tenant_id]
    user_id = accepted.json()["user_id"]
    assert members_of(client, tenant)[user_id] == "developer"
    (invited,) = audit(services, "member.invite", f"invitation:{response.json()['id']}")
    assert invited.tenant_id == uuid.UUID(tenant.tenant_id) and invited.details["role"] == "developer"
    (joined,) = audit(services, "member.join", f"user:{user_id}")
    assert joined.details["account_created"] is True and token not in str(joined.details)
    reused = client.post("/v1/invitations/accept", json={"token": token, "password": NEWCOMER_PASSWORD})
    assert reused.status_code == 400 and reused.json()["type"] == "/problems/invalid-link"


def test_an_existing_account_accepts_signed_in_and_then_sees_both_organisations(client, services, settings):
    first, second = new_organisation(client, services), new_organisation(client, services)
    token = invited_token(client, settings, second, first.email, "viewer")
    anonymous = client.post("/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD})
    assert anonymous.status_code == 401 and anonymous.json()["type"] == "/problems/sign-in-required"
    someone_else = client.post("/v1/invitations/accept", json={"token": token}, headers=second.headers)
    assert someone_else.status_code == 403
    pair = login_pair(client, first.email)
    accepted = client.post("/v1/invitations/accept", json={"token": token}, headers=bearer(pair))
    assert accepted.status_code == 200 and accepted.json()["account_created"] is False  # the link was not used up
    renewed = refresh(client, pair).json()
    listed = {t["id"] for t in client.get("/v1/tenants", headers=bearer(renewed)).json()}
    assert listed == {first.tenant_id, second.tenant_id}
    assert client.get(f"/v1/tenants/{second.tenant_id}", headers=bearer(renewed)).status_code == 200


def test_expired_and_superseded_invitations_are_refused(client, services, settings, database):
    tenant = new_organisation(client, services)
    email = f"late-{uuid.uuid4().hex[:8]}@example.com"
    first = invited_token(client, settings, tenant, email)
    second = invited_token(client, settings, tenant, email)  # a new invitation ends the earlier one
    superseded = client.post("/v1/invitations/accept", json={"token": first, "password": NEWCOMER_PASSWORD})
    assert superseded.status_code == 400
    owner_sql(database, "UPDATE one_time_links SET expires_at = now() - interval '1 second'"
                        " WHERE purpose = 'invite' AND subject = %s", f"{tenant.tenant_id}:{email}")
    expired = client.post("/v1/invitations/accept", json={"token": second, "password": NEWCOMER_PASSWORD})
    assert expired.status_code == 400 and "expired" in expired.json()["detail"]
    assert client.post("/v1/auth/login", json={"email": email, "password": NEWCOMER_PASSWORD}).status_code == 401


def test_who_may_invite_which_role(client, services, settings):
    tenant = new_organisation(client, services)
    _, admin = join(client, settings, tenant, "admin")
    _, developer = join(client, settings, tenant, "developer")
    assert invite(client, tenant, "x1@example.com", "owner", bearer(admin)).status_code == 403
    assert invite(client, tenant, "x2@example.com", "admin", bearer(admin)).status_code == 201
    assert invite(client, tenant, "x3@example.com", "viewer", bearer(developer)).status_code == 403
    assert invite(client, tenant, "x4@example.com", "owner").status_code == 201
    assert invite(client, tenant, tenant.email, "viewer").status_code == 409  # already a member
    assert invite(client, tenant, "x5@example.com", "root").status_code == 422


def test_a_role_change_applies_to_the_members_very_next_request(client, services, settings):
    tenant = new_organisation(client, services)
    user_id, pair = join(client, settings, tenant, "admin")
    members_url = f"/v1/tenants/{tenant.tenant_id}/members"
    assert client.get(members_url, headers=bearer(pair)).status_code == 200
    changed = client.patch(f"{members_url}/{user_id}", json={"role": "viewer"}, headers=tenant.headers)
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    assert client.get(members_url, headers=bearer(pair)).status_code == 401  # the admin token is revoked
    renewed = refresh(client, pair).json()
    assert claims(renewed)["memberships"] == [{"tenant": tenant.tenant_id, "role": "viewer"}]
    assert client.get(members_url, headers=bearer(renewed)).status_code == 403
    (record,) = audit(services, "member.role_change", f"user:{user_id}")
    assert record.details == {"previous": "admin", "role": "viewer", "access_tokens_revoked": 1}
    same = client.patch(f"{members_url}/{user_id}", json={"role": "viewer"}, headers=tenant.headers)
    assert same.status_code == 200 and len(audit(services, "member.role_change", f"user:{user_id}")) == 1
    stranger = client.patch(f"{members_url}/{uuid.uuid4()}", json={"role": "viewer"}, headers=tenant.headers)
    assert stranger.status_code == 404


def test_a_removed_member_is_refused_on_the_very_next_request(client, services, settings):
    tenant = new_organisation(client, services)
    user_id, pair = join(client, settings, tenant, "developer")
    assert client.get(f"/v1/tenants/{tenant.tenant_id}", headers=bearer(pair)).status_code == 200
    removed = client.delete(f"/v1/tenants/{tenant.tenant_id}/members/{user_id}", headers=tenant.headers)
    assert removed.status_code == 204
    refused = client.get(f"/v1/tenants/{tenant.tenant_id}", headers=bearer(pair))
    assert refused.status_code == 401 and refused.json()["type"] == "/problems/unauthorized"
    renewed = refresh(client, pair).json()  # still signed in, without the membership
    assert claims(renewed)["memberships"] == []
    assert client.get(f"/v1/tenants/{tenant.tenant_id}", headers=bearer(renewed)).status_code == 404
    assert user_id not in members_of(client, tenant)
    (record,) = audit(services, "member.remove", f"user:{user_id}")
    assert record.tenant_id == uuid.UUID(tenant.tenant_id) and record.details["role"] == "developer"
    again = client.delete(f"/v1/tenants/{tenant.tenant_id}/members/{user_id}", headers=tenant.headers)
    assert again.status_code == 404


def test_the_last_owner_can_be_neither_demoted_nor_removed(client, services, settings):
    tenant = new_organisation(client, services)
    owner = owner_id(tenant)
    url = f"/v1/tenants/{tenant.tenant_id}/members"
    demoted = client.patch(f"{url}/{owner}", json={"role": "admin"}, headers=tenant.headers)
    assert demoted.status_code == 409 and demoted.json()["type"] == "/problems/last-owner"
    assert client.delete(f"{url}/{owner}", headers=tenant.headers).status_code == 409
    admin_id, admin = join(client, settings, tenant, "admin")
    assert client.patch(f"{url}/{owner}", json={"role": "viewer"}, headers=bearer(admin)).status_code == 403
    assert client.delete(f"{url}/{owner}", headers=bearer(admin)).status_code == 403
    assert client.patch(f"{url}/{admin_id}", json={"role": "owner"}, headers=bearer(admin)).status_code == 403
    assert client.patch(f"{url}/{admin_id}", json={"role": "owner"}, headers=tenant.headers).status_code == 200
    assert members_of(client, tenant) == {owner: "owner", admin_id: "owner"}
    # two owners demoting each other at once: one wins, the tenant keeps an owner
    second_owner = refresh(client, admin).json()
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(
            lambda args: client.patch(f"{url}/{args[0]}", json={"role": "admin"}, headers=args[1]).status_code,
            [(admin_id, tenant.headers), (owner, bearer(second_owner))]))
    assert statuses in ([200, 401], [200, 409])  # the loser is refused, or its own token was just revoked
    assert _stored_roles(services, tenant).count("owner") == 1


def _stored_roles(services, tenant) -> list[str]:
    with services.db.transaction(Scope.system()) as session:
        return list(session.scalars(select(Membership.role).where(Membership.tenant_id == uuid.UUID(tenant.tenant_id))))
