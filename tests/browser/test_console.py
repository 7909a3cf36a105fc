"""The console in a real browser, against the real control plane (API, worker, engine, cluster).

What an operator, an auditor and a tenant admin do with it: sign in, find a tenant, watch a
signup reach ACTIVE live, read a drift report after a `kubectl` edit and correct it with a
reason, read the audit log and export it; what an auditor and a tenant admin cannot do.
The named screenshots are the README's (docs/screenshots, with CAMELEER_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from components.naming import namespace_name
from components.tenant_server import SERVER_NAME
from tests.integration.control_plane import STRONG_PASSWORD, ControlPlane

pytestmark = pytest.mark.browser

SIGNUP_TIMEOUT_MS = 180_000


def sign_in(page: Page, email: str, password: str = STRONG_PASSWORD) -> None:
    page.goto("/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tenants")


def signed_up(plane: ControlPlane, slug: str) -> dict:
    answer = plane.signup(slug)
    assert answer.status_code == 202, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def active_tenant(control_plane: ControlPlane) -> dict:
    """A tenant whose signup the worker ran to ACTIVE."""
    slug = control_plane.unique_slug("br")
    created = signed_up(control_plane, slug)
    owner = control_plane.login(f"owner@{slug}.example.com")
    operation = control_plane.wait_operation(created["operation"]["id"], owner)
    assert operation["status"] == "SUCCEEDED", operation
    return {"slug": slug, "id": created["tenant"]["id"], "email": f"owner@{slug}.example.com"}


def test_an_operator_finds_a_tenant_and_watches_its_signup_reach_active_live(page: Page, control_plane, screenshot):
    control_plane.stop_workers()  # the signup waits, so the page is open before it runs
    slug = control_plane.unique_slug("live")
    created = signed_up(control_plane, slug)
    sign_in(page, control_plane.platform_account("operator"))

    page.get_by_label("Search").fill(slug)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#tenant-count")).to_contain_text("1 tenant")
    page.get_by_role("link", name=slug).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(slug)
    page.locator(f'a[href="/console/operations/{created["operation"]["id"]}"]').click()
    expect(page.locator("#op-status")).to_have_text("PENDING")
    page.evaluate("window.stillTheSamePage = true")

    control_plane.start_worker()
    expect(page.locator("#op-status")).to_have_text("SUCCEEDED", timeout=SIGNUP_TIMEOUT_MS)
    assert page.evaluate("window.stillTheSamePage === true"), "the page was reloaded instead of following live"
    expect(page.locator("#step-activate .step-status")).to_contain_text("succeeded")
    assert page.locator("#events tbody tr[data-event]").count() > 0
    screenshot(page, "operation")

    page.goto(f"/console/tenants/{created['tenant']['id']}")
    expect(page.locator("dl.facts").first).to_contain_text("ACTIVE")
    expect(page.locator("#quota")).to_contain_text(f"tenant-{slug}")  # read from the cluster
    screenshot(page, "tenant")


def test_the_tenants_list_shows_local_times_with_utc_on_hover(page: Page, control_plane, active_tenant, screenshot):
    sign_in(page, control_plane.platform_account("auditor"))
    created = page.locator("tbody tr", has=page.get_by_role("link", name=active_tenant["slug"])).locator("time").last
    assert "UTC" in created.get_attribute("title")
    assert "CET" in created.inner_text() or "+01" in created.inner_text()  # the browser's zone is Europe/Berlin
    screenshot(page, "tenants")


def test_a_drift_found_after_a_kubectl_edit_is_corrected_with_a_reason(page: Page, control_plane, active_tenant, kubectl,
                                                                     screenshot):
    namespace = namespace_name(active_tenant["slug"], "prod")
    kubectl("-n", namespace, "scale", "deployment", SERVER_NAME, "--replicas=3")
    sign_in(page, control_plane.platform_account("operator"))
    page.get_by_role("link", name="Drift").click()
    page.get_by_role("button", name="Check every stack now").click()
    expect(page.locator("#check-note")).to_contain_text("queued")
    stack = page.locator(f"section#stack-tenant-{active_tenant['slug']}")
    wait_for_report(page, stack.locator("table.drift-properties"), "spec.replicas")
    expect(stack.locator("table.drift-properties")).to_contain_text("3")  # live, beside the stack's 1
    screenshot(page, "drift")

    stack.get_by_label(f"Reason for correcting tenant-{active_tenant['slug']}").fill("hand edit found in review")
    stack.get_by_role("button", name="Correct drift").click()
    expect(page.locator("#op-status")).to_have_text("SUCCEEDED", timeout=SIGNUP_TIMEOUT_MS)
    assert json.loads(kubectl("-n", namespace, "get", "deployment", SERVER_NAME, "-o", "json"))["spec"]["replicas"] == 1

    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").fill("drift.")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-records")).to_contain_text("hand edit found in review")


def wait_for_report(page: Page, locator, text: str, timeout_s: float = 180) -> None:
    """The worker's check takes a while: reload the page (as its note says) until the report is there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if locator.count() and text in locator.inner_text():
            return
        time.sleep(2)
        page.reload()
    raise AssertionError(f"no report with {text!r} within {timeout_s:g}s")


def test_an_auditor_reads_and_exports_the_audit_log_and_can_change_nothing(page: Page, control_plane, active_tenant,
                                                                          screenshot):
    sign_in(page, control_plane.platform_account("auditor"))
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#chain-state")).to_be_visible()
    page.get_by_label("Tenant").fill(active_tenant["slug"])
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-records")).to_contain_text("tenant.")
    screenshot(page, "audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert rows and all(row["tenant_id"] == active_tenant["id"] for row in rows)
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON Lines").click()
    records = [json.loads(line) for line in download.value.path().read_text().splitlines()]
    assert len(records) == len(rows)

    for url in ("/console/drift", "/console/clusters", f"/console/tenants/{active_tenant['id']}", "/console/audit"):
        page.goto(url)
        forms = page.locator("main form[method=post]")
        assert forms.count() == 0 or all("verify" in (forms.nth(i).get_attribute("action") or "")
                                         for i in range(forms.count())), f"a write form on {url}"
    page.goto("/console/clusters")
    screenshot(page, "clusters")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = page.request.post(f"/console/drift/{active_tenant['id']}/correction",
                               form={"csrf_token": token, "reason": "forged", "idempotency_key": uuid.uuid4().hex})
    assert forged.status == 403
    cordon = page.request.post("/console/clusters/eu1/cordon", form={"csrf_token": token})
    assert cordon.status == 403


def test_a_tenant_admin_sees_their_tenant_and_not_another(page: Page, control_plane, active_tenant, screenshot):
    other = control_plane.unique_slug("other")
    created = signed_up(control_plane, other)
    sign_in(page, active_tenant["email"])
    expect(page.get_by_role("link", name=active_tenant["slug"])).to_be_visible()
    expect(page.get_by_role("link", name=other)).to_have_count(0)
    expect(page.get_by_role("link", name="Audit")).to_have_count(0)
    page.get_by_role("link", name=active_tenant["slug"]).click()
    page.get_by_role("link", name="Stack history").click()
    expect(page.locator("#stack-updates tbody tr").first).to_contain_text("succeeded")
    screenshot(page, "history")
    answer = page.goto(f"/console/tenants/{created['tenant']['id']}")
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not Found")
    assert other not in page.content()
