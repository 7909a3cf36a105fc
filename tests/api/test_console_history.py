"""The console's stack history of a tenant and the diff of one update (test client, real DB,
the fake engine's history replaced by updates shaped like the state backend's)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from api.auth.roles import PlatformRole
from api.db.models import StackEvent
from api.db.session import Scope
from api.services import Services
from api.stacks.driver import StackUpdate
from tests.api.conftest import sign_up
from tests.api.console_support import console_login, platform_viewer


def engine_event(urn: str, op: str, detailed_diff: dict[str, str]) -> dict:
    """A resource event as automation.events.OperationEvent.to_dict() stores it."""
    return {"stack": "s", "operation": "update", "type": "resource-outputs", "sequence": 7, "urn": urn,
            "resource_type": "kubernetes:apps/v1:Deployment", "op": op, "severity": None, "message": None,
            "data": {"diffs": ["spec"], "detailed_diff": detailed_diff}}


def recorded_history(services: Services, driver, tenant) -> list[StackUpdate]:
    """Two updates: one the service made for the signup operation, one made by hand long ago."""
    operation_id = uuid.UUID(tenant.operation_id)
    urn = f"urn:pulumi:tenant-{tenant.slug}::cameleer::kubernetes:apps/v1:Deployment::prod-server"
    with services.db.transaction(Scope.tenant(uuid.UUID(tenant.tenant_id))) as session:
        session.add(StackEvent(tenant_id=uuid.UUID(tenant.tenant_id), operation_id=operation_id, step="provision",
                               event_type="resource-outputs", payload=engine_event(urn, "update", {"spec.replicas": "update"})))
    now = datetime.now(UTC)
    stack = f"tenant-{tenant.slug}"
    updates = [
        StackUpdate(stack=stack, kind="update", result="succeeded", started_at=now - timedelta(minutes=2),
                    ended_at=now + timedelta(minutes=1), version=2, resource_changes={"same": 9, "update": 1},
                    message=f"[cameleer] who=control-plane op={operation_id} kind=control-plane why=provision tenant {tenant.slug} (low)",
                    operation_id=str(operation_id)),
        StackUpdate(stack=stack, kind="update", result="failed", started_at=now - timedelta(days=3),
                    ended_at=now - timedelta(days=3, seconds=-20), version=1, message="hand-made hotfix",
                    resource_changes={"create": 4}),
    ]
    driver.history = lambda ref: updates if ref.slug == tenant.slug else []
    return updates


def test_the_history_lists_updates_with_who_why_when_result_and_changes(client: TestClient, services: Services, driver):
    tenant = sign_up(client, services)
    recorded_history(services, driver, tenant)
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get(f"/console/tenants/{tenant.tenant_id}/history")
    assert page.status_code == 200, page.text
    rows = page.text.split('id="update-')
    assert rows[1].startswith('2"') and rows[2].startswith('1"')  # newest first
    assert "control-plane" in rows[1] and f"provision tenant {tenant.slug} (low)" in rows[1]
    assert "badge-succeeded" in rows[1] and "update 1" in rows[1] and "<time" in rows[1]
    assert "hand-made hotfix" in rows[2] and "badge-failed" in rows[2] and "create 4" in rows[2]
    assert f'href="/console/tenants/{tenant.tenant_id}/history/2"' in page.text


def test_each_update_in_the_list_links_to_the_operation_that_made_it(client: TestClient, services: Services, driver):
    tenant, other = sign_up(client, services), sign_up(client, services)
    updates = recorded_history(services, driver, tenant)
    updates[1] = dataclasses.replace(updates[1], operation_id=other.operation_id)  # not this tenant's
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get(f"/console/tenants/{tenant.tenant_id}/history")
    assert page.status_code == 200, page.text
    rows = page.text.split('id="update-')
    assert f'href="/console/operations/{tenant.operation_id}"' in rows[1] and "signup" in rows[1]
    assert "/console/operations/" not in rows[2]


def test_an_update_page_shows_the_resources_and_properties_its_operation_recorded(
        client: TestClient, services: Services, driver):
    tenant = sign_up(client, services)
    recorded_history(services, driver, tenant)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get(f"/console/tenants/{tenant.tenant_id}/history/2")
    assert page.status_code == 200, page.text
    assert f'href="/console/operations/{tenant.operation_id}"' in page.text and "named in the update" in page.text
    diff = page.text.split('id="update-diff"')[1]
    assert "prod-server" in diff and "spec.replicas" in diff
    by_hand = client.get(f"/console/tenants/{tenant.tenant_id}/history/1")
    assert by_hand.status_code == 200
    assert 'id="update-diff-empty"' in by_hand.text and "/console/operations/" not in by_hand.text
    assert "not recorded" in by_hand.text  # who and why of a hand-made update
    assert client.get(f"/console/tenants/{tenant.tenant_id}/history/3").status_code == 404


def test_an_update_without_an_operation_id_is_tied_to_its_operation_by_time(
        client: TestClient, services: Services, driver):
    tenant = sign_up(client, services)
    updates = recorded_history(services, driver, tenant)
    updates[0] = dataclasses.replace(updates[0], message="[cameleer] who=ci why=routine", operation_id=None)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get(f"/console/tenants/{tenant.tenant_id}/history/2")
    assert f'href="/console/operations/{tenant.operation_id}"' in page.text
    assert "recorded while the update ran" in page.text


def test_a_tenant_admin_reads_their_own_history_and_not_another_tenants(client: TestClient, services: Services, driver):
    mine, theirs = sign_up(client, services), sign_up(client, services)
    recorded_history(services, driver, mine)
    assert console_login(client, mine.email).status_code == 303
    assert client.get(f"/console/tenants/{mine.tenant_id}/history").status_code == 200
    for path in ("history", "history/1"):
        other = client.get(f"/console/tenants/{theirs.tenant_id}/{path}")
        assert other.status_code == 404 and theirs.slug not in other.text
