"""The pages the mailed links open (signup confirmation, invitation, password reset), end to
end with the session's outbox: the link's token in the fragment, the form posting to the API's
own domain function, and the API's reason for a used or expired link."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.models import Membership, Tenant, User
from api.db.session import Scope
from api.services import Services
from api.settings import Settings
from tests.api.conftest import STRONG_PASSWORD, mails_to, run_queue, signup_body, verification_token
from tests.api.console_support import console_login, csrf_of
from tests.api.test_members import NEWCOMER_PASSWORD, invited_token
from tests.api.test_sessions import last_mail_to, new_organisation

NEW_PASSWORD = "a-brand-new-passphrase-2026"


def submit(client: TestClient, page_url: str, **fields):
    """Open the page, fill its form and post it, as a browser would."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text
    assert 'id="token"' in page.text and 'data-token-from-fragment' in page.text
    return client.post(page_url, data={"csrf_token": csrf_of(page.text), **fields}, follow_redirects=False)


def test_the_mails_link_to_the_console_pages_with_the_token_in_the_fragment(client: TestClient, services: Services,
                                                                           settings: Settings):
    body = signup_body()
    assert client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).status_code == 202
    (mail,) = mails_to(settings, body["owner_email"])
    token = verification_token(settings, body["owner_email"])
    assert f"{settings.public_base_url.rstrip('/')}/console/signup/verify#token={token}" in mail
    tenant = new_organisation(client, services)
    assert client.post("/v1/auth/password-reset", json={"email": tenant.email}).status_code == 202
    assert "/console/reset-password#token=" in last_mail_to(settings, tenant.email)
    invited = f"new-{uuid.uuid4().hex[:8]}@example.com"
    invited_token(client, settings, tenant, invited)
    assert "/console/invitations/accept#token=" in last_mail_to(settings, invited)


def test_a_signup_is_confirmed_once_from_its_page(client: TestClient, services: Services, settings: Settings):
    body = signup_body()
    assert client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).status_code == 202
    token = verification_token(settings, body["owner_email"])
    confirmed = submit(client, "/console/signup/verify", token=token)
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/console/done/signup"
    done = client.get(confirmed.headers["location"])
    assert "Your organisation is being created" in done.text and 'href="/console/login"' in done.text
    with services.db.transaction(Scope.system()) as session:
        assert session.scalar(select(Tenant.status).where(Tenant.slug == body["slug"])) is not None
    again = submit(client, "/console/signup/verify", token=token)
    run_queue(services)  # its provisioning runs with this test's stack driver, not a later test's
    assert again.status_code == 410
    assert "This verification link is already used" in again.text and token not in again.text
    unknown = submit(client, "/console/signup/verify", token="not-a-real-token")
    assert unknown.status_code == 410 and "is unknown" in unknown.text


def test_a_link_form_without_the_csrf_token_is_refused(client: TestClient):
    refused = client.post("/console/signup/verify", data={"token": "x"}, follow_redirects=False)
    assert refused.status_code == 403


def test_an_invitation_creates_a_new_account_from_its_page(client: TestClient, services: Services,
                                                           settings: Settings):
    tenant = new_organisation(client, services)
    email = f"newcomer-{uuid.uuid4().hex[:8]}@example.com"
    token = invited_token(client, settings, tenant, email, "developer")
    weak = submit(client, "/console/invitations/accept", token=token, password="short")
    assert weak.status_code == 422 and f'value="{token}"' in weak.text  # the link still works: kept
    joined = submit(client, "/console/invitations/accept", token=token, password=NEWCOMER_PASSWORD)
    assert joined.status_code == 303 and joined.headers["location"] == "/console/done/invitation"
    assert console_login(client, email, NEWCOMER_PASSWORD).status_code == 303
    reused = submit(client, "/console/invitations/accept", token=token, password=NEWCOMER_PASSWORD)
    assert reused.status_code == 400 and "The link is already used" in reused.text and token not in reused.text


def test_an_existing_account_accepts_its_invitation_signed_in(client: TestClient, services: Services,
                                                              settings: Settings):
    inviting, invited = new_organisation(client, services), new_organisation(client, services)
    token = invited_token(client, settings, inviting, invited.email, "viewer")
    anonymous = submit(client, "/console/invitations/accept", token=token)
    assert anonymous.status_code == 401 and "sign in as it" in anonymous.text
    assert 'href="/console/login?next=/console/invitations/accept"' in anonymous.text
    assert console_login(client, invited.email).status_code == 303
    form = client.get("/console/invitations/accept")
    assert f"You accept as {invited.email}" in form.text and 'id="password"' not in form.text
    joined = submit(client, "/console/invitations/accept", token=token)
    assert joined.status_code == 303
    with services.db.transaction(Scope.system()) as session:
        role = session.scalar(select(Membership.role).join(User, User.id == Membership.user_id)
                              .where(User.email == invited.email, Membership.tenant_id == uuid.UUID(inviting.tenant_id)))
    assert role == "viewer"


def test_a_password_is_reset_once_from_its_page(client: TestClient, services: Services, settings: Settings):
    tenant = new_organisation(client, services)
    assert client.post("/v1/auth/password-reset", json={"email": tenant.email}).status_code == 202
    token = re.search(r"#token=([A-Za-z0-9_-]+)", last_mail_to(settings, tenant.email)).group(1)
    weak = submit(client, "/console/reset-password", token=token, new_password="weak")
    assert weak.status_code == 422 and f'value="{token}"' in weak.text
    reset = submit(client, "/console/reset-password", token=token, new_password=NEW_PASSWORD)
    assert reset.status_code == 303 and reset.headers["location"] == "/console/done/reset"
    assert "Your password is changed" in client.get("/console/done/reset").text
    assert console_login(client, tenant.email, STRONG_PASSWORD).status_code == 401
    assert console_login(client, tenant.email, NEW_PASSWORD).status_code == 303
    reused = submit(client, "/console/reset-password", token=token, new_password=NEW_PASSWORD + "x")
    assert reused.status_code == 400 and "The link is already used" in reused.text


def test_the_link_pages_need_no_inline_script(client: TestClient):
    for path in ("/console/signup/verify", "/console/invitations/accept", "/console/reset-password"):
        page = client.get(path)
        assert page.status_code == 200 and "<script>" not in page.text and "style=" not in page.text, path
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
    script = client.get("/console/static/console.js").text
    assert "data-token-from-fragment" in script and "history.replaceState" in script
