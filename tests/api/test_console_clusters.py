"""The console's clusters page: capacity and placement for operators and auditors; cordon and
uncordon for operators only (a forged post by an auditor is refused), audited as in the API."""

from __future__ import annotations

import secrets

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.roles import PlatformRole
from api.db.models import AuditRecord, Cluster
from api.db.session import Scope
from api.services import Services
from tests.api.conftest import add_cluster
from api.console.session import ACCESS_COOKIE, REFRESH_COOKIE
from tests.api.console_support import console_login, csrf_of, forged_post, platform_viewer, post_form
from tests.api.test_sessions import new_organisation


def state_of(services: Services, name: str) -> str:
    with services.db.transaction(Scope.system()) as session:
        return session.scalar(select(Cluster.state).where(Cluster.name == name))


def state_records(services: Services, name: str) -> list[tuple[str, str]]:
    with services.db.transaction(Scope.system()) as session:
        return [tuple(row) for row in session.execute(
            select(AuditRecord.action, AuditRecord.actor).where(AuditRecord.resource == f"cluster:{name}")
            .order_by(AuditRecord.id))]


def a_cordoned_cluster(services: Services) -> str:
    """Cordoned, so no other test's tenant is placed there."""
    return add_cluster(services, f"cc-{secrets.token_hex(4)}", kind="shared", cpu_m=8_000, memory_mi=16_384,
                       slots=10, state="cordoned")


def test_auditors_see_capacity_and_placement_but_no_button(client: TestClient, services: Services):
    tenant = new_organisation(client, services)  # placed on the session's shared cluster eu1
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/clusters")
    assert page.status_code == 200
    assert 'id="cluster-eu1"' in page.text and " / 10000 (" in page.text  # eu1's CPU capacity, 10000 cores
    assert f'href="/console/tenants/{tenant.tenant_id}">{tenant.slug}</a>' in page.text
    assert 'href="/console/tenants?cluster=eu1"' in page.text
    assert "cordon" not in page.text.lower().replace("badge-cordoned", "")
    assert "<script>" not in page.text and "style=" not in page.text


def test_a_forged_cordon_post_by_an_auditor_is_refused(client: TestClient, services: Services):
    name = a_cordoned_cluster(services)
    platform_viewer(client, services, PlatformRole.AUDITOR)
    refused = forged_post(client, f"/console/clusters/{name}/uncordon", page_url="/console/clusters")
    assert refused.status_code == 403
    assert state_of(services, name) == "cordoned" and state_records(services, name) == []


def test_operators_uncordon_and_cordon_through_the_registry_audited_once(client: TestClient, services: Services):
    name = a_cordoned_cluster(services)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get("/console/clusters")
    assert f'id="uncordon-{name}"' in page.text and f'id="cordon-{name}"' not in page.text
    done = post_form(client, "/console/clusters", f"/console/clusters/{name}/uncordon")
    assert done.status_code == 303 and done.headers["location"] == f"/console/clusters#cluster-{name}"
    assert state_of(services, name) == "active"
    assert f'id="cordon-{name}"' in client.get("/console/clusters").text
    for _ in range(2):  # the second cordon changes nothing, and records nothing more
        assert post_form(client, "/console/clusters", f"/console/clusters/{name}/cordon").status_code == 303
    assert state_of(services, name) == "cordoned"
    actions = state_records(services, name)
    assert [action for action, _ in actions] == ["cluster.uncordoned", "cluster.cordoned"]
    assert all(actor.startswith("user:") for _, actor in actions)
    assert post_form(client, "/console/clusters", f"/console/clusters/{name}/remove").status_code == 404
    assert post_form(client, "/console/clusters", "/console/clusters/no-such-cluster/cordon").status_code == 404


def test_a_tenant_admin_cannot_open_the_clusters(client: TestClient, services: Services):
    tenant = new_organisation(client, services)
    assert console_login(client, tenant.email).status_code == 303
    refused = client.get("/console/clusters")
    assert refused.status_code == 403 and "eu1" not in refused.text
    assert forged_post(client, "/console/clusters/eu1/cordon").status_code == 403
    assert state_of(services, "eu1") == "active"


def test_a_post_that_renewed_the_session_hands_the_new_cookies_on(client: TestClient, services: Services):
    """The renewal used the refresh token up: without the new one the next page would be a reuse."""
    name = a_cordoned_cluster(services)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    token = csrf_of(client.get("/console/clusters").text)
    client.cookies.delete(ACCESS_COOKIE)  # as when the access token has expired
    done = client.post(f"/console/clusters/{name}/uncordon", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    renewed = [v for k, v in done.headers.multi_items() if k == "set-cookie"]
    assert any(c.startswith(ACCESS_COOKIE) for c in renewed) and any(c.startswith(REFRESH_COOKIE) for c in renewed)
    assert client.get("/console/clusters", follow_redirects=False).status_code == 200  # still signed in
    assert post_form(client, "/console/clusters", f"/console/clusters/{name}/cordon").status_code == 303
