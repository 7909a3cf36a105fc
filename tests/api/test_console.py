"""The console's sign-in, security headers, CSRF, tenant list and tenant pages (test client, real DB)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.roles import PlatformRole
from api.console.session import ACCESS_COOKIE, REFRESH_COOKIE
from api.db.models import AuditRecord
from api.db.session import Scope
from api.services import Services
from api.settings import libpq_dsn
from sqlalchemy import select
from tests.api.conftest import sign_up
from tests.api.console_support import console_login, csrf_of, platform_viewer


def fresh_client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings, services=services)).__enter__()


def test_a_page_without_a_session_redirects_to_the_login_form_and_back(client: TestClient, services: Services):
    response = client.get("/console/tenants?q=abc", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/tenants?q=abc"
    email = platform_viewer(client, services, PlatformRole.OPERATOR)
    assert email
    signed_in = console_login(client, email, next_url="/console/tenants?q=abc")
    assert signed_in.headers["location"] == "/console/tenants?q=abc"


def test_login_sets_httponly_samesite_cookies_and_audits_it(client: TestClient, services: Services):
    email = f"op-{uuid.uuid4().hex[:8]}@platform.example.com"
    from api.auth.users import create_user
    from tests.api.conftest import STRONG_PASSWORD

    with services.db.transaction(Scope.system()) as session:
        user = create_user(session, email, STRONG_PASSWORD, platform_role=PlatformRole.OPERATOR)
        user_id = user.id
    response = console_login(client, email)
    assert response.status_code == 303
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    session_cookies = [c for c in cookies if c.startswith("cameleer_console_access") or c.startswith("cameleer_console_refresh")]
    assert len(session_cookies) == 2
    for cookie in session_cookies:
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http on loopback; Secure when served over TLS
    with services.db.transaction(Scope.system()) as session:
        logins = session.scalars(select(AuditRecord).where(AuditRecord.action == "auth.login",
                                                           AuditRecord.actor == f"user:{user_id}")).all()
    assert [r.details.get("via") for r in logins] == ["console"]


def test_a_wrong_password_shows_the_form_again_with_the_reason(client: TestClient, services: Services):
    email = platform_viewer(fresh_client(services), services, PlatformRole.OPERATOR)
    response = console_login(client, email, "not-the-password-at-all")
    assert response.status_code == 401
    assert "Email or password is wrong." in response.text
    assert client.get("/console/tenants", follow_redirects=False).status_code == 303


def test_pages_carry_a_strict_content_security_policy_and_no_inline_script(client: TestClient, services: Services):
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get("/console/tenants")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and "onclick" not in page.text and "style=" not in page.text


def test_a_form_post_without_the_csrf_token_or_from_another_site_is_refused(client: TestClient, services: Services):
    platform_viewer(client, services, PlatformRole.OPERATOR)
    assert client.post("/console/logout", data={}, follow_redirects=False).status_code == 403
    token = csrf_of(client.get("/console/tenants").text)
    cross_site = client.post("/console/logout", data={"csrf_token": token},
                             headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert cross_site.status_code == 403
    assert client.get("/console/tenants").status_code == 200  # still signed in
    logout = client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert logout.status_code == 303
    assert client.get("/console/tenants", follow_redirects=False).status_code == 303


def listed(page, tenant) -> bool:
    return f'href="/console/tenants/{tenant.tenant_id}"' in page.text


def test_operators_see_every_tenant_and_filter_them(client: TestClient, services: Services):
    first, second = sign_up(client, services), sign_up(client, services, tier="mid")
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/tenants", params={"q": first.slug})
    assert listed(page, first) and not listed(page, second)
    mids = client.get("/console/tenants", params={"tier": "mid", "q": second.slug[:-1]})
    assert listed(mids, second) and not listed(mids, first)
    active = client.get("/console/tenants", params={"q": second.slug, "status": "ACTIVE", "last": "succeeded", "drift": "clean"})
    assert listed(active, second)
    for refused in ({"last": "failed"}, {"drift": "drifted"}, {"status": "SUSPENDED"}, {"cluster": "nowhere"}):
        assert not listed(client.get("/console/tenants", params={"q": second.slug, **refused}), second), refused
    any_choice = {"status": "", "tier": "", "cluster": "", "drift": "", "last": ""}  # the form's "any"
    assert listed(client.get("/console/tenants", params={"q": second.slug, **any_choice}), second)
    assert client.get("/console/tenants", params={"status": "NOPE"}).status_code == 422


def test_a_tenant_admin_sees_only_their_own_tenant(client: TestClient, services: Services):
    mine, theirs = sign_up(client, services), sign_up(client, services)
    assert console_login(client, mine.email).status_code == 303
    listing = client.get("/console/tenants")
    assert listed(listing, mine) and not listed(listing, theirs)
    own = client.get(f"/console/tenants/{mine.tenant_id}")
    assert own.status_code == 200 and mine.slug in own.text and "License" in own.text
    other = client.get(f"/console/tenants/{theirs.tenant_id}")
    assert other.status_code == 404 and theirs.slug not in other.text
    assert "/console/drift" not in listing.text  # platform pages are not offered


def test_the_tenant_page_shows_its_operations_license_and_billing(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get(f"/console/tenants/{tenant.tenant_id}")
    assert page.status_code == 200
    assert f"/console/operations/{tenant.operation_id}" in page.text
    assert "badge-valid" in page.text  # the license issued at signup
    assert "Subscription" in page.text


def test_pagination_keeps_the_filters(client: TestClient, services: Services):
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get("/console/tenants", params={"tier": "low"})
    assert page.status_code == 200
    if "Next →" in page.text:
        assert "tier=low" in page.text.split('rel="next"')[1].split(">")[0]
    assert client.get("/console/tenants", params={"page": 0}).status_code == 422


def test_a_session_renewed_on_an_error_page_keeps_working(client: TestClient, services: Services):
    """The renewal used the refresh token up: any answer, an error page too, must hand the new one on."""
    platform_viewer(client, services, PlatformRole.OPERATOR)
    client.cookies.set("cameleer_console_access", "expired-or-garbage", path="/console")
    missing = client.get(f"/console/tenants/{uuid.uuid4()}")
    assert missing.status_code == 404
    renewed = [v for k, v in missing.headers.multi_items() if k == "set-cookie"]
    assert any(c.startswith("cameleer_console_refresh=") for c in renewed)
    assert client.get("/console/tenants").status_code == 200


def browser_like(services: Services, cookies) -> TestClient:
    """Another client with the same cookies: another tab of the same browser."""
    twin = fresh_client(services)
    for cookie in cookies.jar:
        twin.cookies.set(cookie.name, cookie.value, domain=cookie.domain, path=cookie.path)
    return twin


def test_two_requests_renewing_one_expired_session_at_once_both_keep_it(client: TestClient, services: Services):
    """A page and its event stream, or two tabs, present the same expired access token and the
    same refresh token together: the second renewal is not a reuse that ends the session."""
    platform_viewer(client, services, PlatformRole.OPERATOR)
    client.cookies.set(ACCESS_COOKIE, "expired-or-garbage", path="/console")
    tabs = [client, browser_like(services, client.cookies)]
    start = threading.Barrier(len(tabs))

    def open_page(tab: TestClient):
        start.wait()
        return tab.get("/console/tenants", follow_redirects=False)

    with ThreadPoolExecutor(max_workers=len(tabs)) as pool:
        pages = list(pool.map(open_page, tabs))
    assert [page.status_code for page in pages] == [200, 200]
    for tab in tabs:
        assert tab.get("/console/tenants", follow_redirects=False).status_code == 200
        tab.cookies.set(ACCESS_COOKIE, "expired-or-garbage", path="/console")  # renews once more, each
    assert [tab.get("/console/tenants", follow_redirects=False).status_code for tab in tabs] == [200, 200]


def test_a_refresh_cookie_replayed_after_the_reuse_interval_ends_the_session(
    client: TestClient, services: Services, database
):
    platform_viewer(client, services, PlatformRole.OPERATOR)
    copied = browser_like(services, client.cookies)  # a copy of the cookies, replayed later
    client.cookies.set(ACCESS_COOKIE, "expired-or-garbage", path="/console")
    assert client.get("/console/tenants", follow_redirects=False).status_code == 200  # renewed
    used = hashlib.sha256(copied.cookies.get(REFRESH_COOKIE, path="/console").encode()).digest()
    interval = services.settings.refresh_token_reuse_interval_seconds
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as connection:
        connection.execute("UPDATE refresh_tokens SET used_at = used_at - make_interval(secs => %s)"
                           " WHERE token_sha256 = %s", (interval + 1, used))
    copied.cookies.set(ACCESS_COOKIE, "expired-or-garbage", path="/console")
    assert copied.get("/console/tenants", follow_redirects=False).status_code == 303
    assert client.get("/console/tenants", follow_redirects=False).status_code == 303  # the whole session ended
    with services.db.transaction(Scope.system()) as session:
        assert session.scalars(select(AuditRecord).where(AuditRecord.action == "auth.refresh_reuse")
                               .order_by(AuditRecord.id.desc()).limit(1)).one().result == "denied"
