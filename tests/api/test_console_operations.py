"""The console's operation page: steps, live progress (server-sent events), a preview's diff,
and confirm / cancel / retry; and the API's cancel (test client, real DB, fake engine)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.roles import PlatformRole
from api.db.models import AuditRecord, Cluster, Operation, StackEvent, Tenant
from api.db.session import Scope
from api.operations.plans import new_step
from api.services import Services
from tests.api.conftest import platform_user, run_queue, sign_up
from tests.api.console_support import console_login, platform_viewer, post_form

DIFF = {
    "summary": {"update": 1, "same": 4},
    "resources": [{
        "urn": "urn:pulumi:t::cameleer::kubernetes:core/v1:ResourceQuota::quota-prod", "type": "kubernetes:core/v1:ResourceQuota",
        "name": "quota-prod", "op": "update",
        "properties": [{"path": "spec.hard.cpu", "kind": "update", "replace": False, "old": "2", "new": "8"}],
    }],
}


def step(name: str, status: str, attempts: int = 1, errors: tuple[str, ...] = (), **extra) -> dict:
    record = new_step(name)
    record.update(status=status, attempts=attempts, started_at=datetime.now(UTC).isoformat(), **extra)
    record["errors"] = [{"at": datetime.now(UTC).isoformat(), "attempt": i + 1, "message": m} for i, m in enumerate(errors)]
    return record


def add_operation(services: Services, tenant_id: str, status: str, steps: list[dict], *, kind: str = "change_tier",
                  error: str | None = None, events: int = 0, params: dict | None = None) -> str:
    """An operation row as the runner leaves it in `status`, with `events` engine progress records."""
    with services.db.transaction(Scope.system()) as session:
        operation = Operation(
            kind=kind, tenant_id=uuid.UUID(tenant_id), idempotency_key=f"test:{uuid.uuid4().hex}", request_fingerprint="0" * 64,
            status=status, steps=steps, params=params or {}, error=error, requested_by="user:test",
            current_step=next((s["name"] for s in steps if s["status"] != "succeeded"), None),
            finished_at=datetime.now(UTC) if status in ("SUCCEEDED", "FAILED") else None,
        )
        session.add(operation)
        session.flush()
        for number in range(events):
            session.add(progress_record(operation, number))
        return str(operation.id)


def progress_record(operation: Operation, number: int) -> StackEvent:
    return StackEvent(tenant_id=operation.tenant_id, operation_id=operation.id, step="stack_up", event_type="resource-outputs",
                      payload={"urn": f"urn:pulumi:t::cameleer::kubernetes:apps/v1:Deployment::server-{number}",
                               "resource_type": "kubernetes:apps/v1:Deployment", "op": "create", "message": None})


def stream(client: TestClient, operation_id: str, **kwargs) -> list[dict]:
    """The server-sent events of the operation's stream, read to its end: each as {id, event, data}."""
    response = client.get(f"/console/operations/{operation_id}/events", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append({"id": int(fields["id"]) if "id" in fields else None, "event": fields["event"], "data": fields["data"]})
    return events


def awaiting_confirmation(services: Services, tenant_id: str) -> str:
    return add_operation(services, tenant_id, "AWAITING_CONFIRMATION", [
        step("place", "succeeded"), step("preview", "succeeded", result={"stack": "tenant-x", "changes": DIFF}),
        step("confirm", "waiting", note="review the preview step"), new_step("billing")])


def test_a_running_operation_shows_its_steps_the_events_so_far_and_a_refresh_link(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    operation_id = add_operation(services, tenant.tenant_id, "RUNNING", [
        step("license", "succeeded"), step("stack_up", "retrying", attempts=2, errors=("StackUnavailable: engine busy",)),
        new_step("readiness")], events=2)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get(f"/console/operations/{operation_id}")
    assert page.status_code == 200
    assert 'id="step-stack_up"' in page.text and "badge-retrying" in page.text
    assert "attempt 1: StackUnavailable: engine busy" in page.text
    assert page.text.count('data-event="') == 2 and "server-1" in page.text and "kubernetes:apps/v1:Deployment" in page.text
    last = max(int(i) for i in re.findall(r'data-event="(\d+)"', page.text))
    assert f'data-events="/console/operations/{operation_id}/events?after={last}"' in page.text
    assert f'href="/console/operations/{operation_id}">Refresh</a>' in page.text
    for button in ('id="confirm"', 'id="cancel"', 'id="retry"'):
        assert button not in page.text
    assert "style=" not in page.text and "<script>" not in page.text


def test_a_finished_operation_has_no_live_stream_and_a_failed_one_shows_its_error(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    signed_out = client.get(f"/console/operations/{tenant.operation_id}", follow_redirects=False)
    assert signed_out.status_code == 303  # to the login form
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get(f"/console/operations/{tenant.operation_id}")
    assert page.status_code == 200 and "badge-succeeded" in page.text
    assert "data-events=" not in page.text and "Refresh" not in page.text
    failed = add_operation(services, tenant.tenant_id, "FAILED", [step("stack_up", "failed", errors=("StackChangeRefused: quota",))],
                           error="step stack_up: StackChangeRefused: quota")
    page = client.get(f"/console/operations/{failed}")
    assert "step stack_up: StackChangeRefused: quota" in page.text and "badge-failed" in page.text
    assert 'id="retry"' not in page.text  # an auditor never sees a button that changes anything


def test_operators_retry_a_failed_operation_and_a_forged_retry_by_an_auditor_is_refused(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    failed = add_operation(services, tenant.tenant_id, "FAILED", [step("stack_up", "failed", errors=("boom",))], kind="suspend",
                           error="step stack_up: boom")
    page_url = f"/console/operations/{failed}"
    platform_viewer(client, services, PlatformRole.AUDITOR)
    forged = post_form(client, page_url, f"{page_url}/retry")
    assert forged.status_code == 403
    platform_viewer(client, services, PlatformRole.OPERATOR)
    assert 'id="retry"' in client.get(page_url).text
    assert client.post(f"{page_url}/retry", data={}, follow_redirects=False).status_code == 403  # no CSRF token
    retried = post_form(client, page_url, f"{page_url}/retry")
    assert retried.status_code == 303 and retried.headers["location"] == page_url
    with services.db.transaction(Scope.system()) as session:
        assert session.get(Operation, uuid.UUID(failed)).status == "PENDING"


def test_the_preview_diff_and_the_owner_confirms_through_the_console(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    operation_id = awaiting_confirmation(services, tenant.tenant_id)
    page_url = f"/console/operations/{operation_id}"
    assert console_login(client, tenant.email).status_code == 303
    page = client.get(page_url)
    assert page.status_code == 200 and "badge-awaiting_confirmation" in page.text
    diff = page.text.split('id="preview-diff"')[1].split("</table>")[0]
    assert "quota-prod" in diff and "spec.hard.cpu" in diff and "<code>2</code>" in diff and "<code>8</code>" in diff
    assert 'id="confirm"' in page.text and 'id="cancel"' in page.text and 'id="retry"' not in page.text
    confirmed = post_form(client, page_url, f"{page_url}/confirm")
    assert confirmed.status_code == 303
    with services.db.transaction(Scope.system()) as session:
        operation = session.get(Operation, uuid.UUID(operation_id))
        assert operation.status == "PENDING" and operation.params["confirmed_by"].startswith("user:")
        assert session.scalar(select(AuditRecord).where(AuditRecord.action == "operation.confirm",
                                                        AuditRecord.resource == f"operation:{operation_id}"))
    again = post_form(client, page_url, f"{page_url}/confirm")
    assert again.status_code == 409 and "awaiting confirmation" in again.text


def test_an_auditor_sees_no_decision_and_a_forged_one_is_refused_and_another_tenant_is_not_found(client: TestClient, services: Services):
    tenant, other = sign_up(client, services), sign_up(client, services)
    operation_id = awaiting_confirmation(services, tenant.tenant_id)
    page_url = f"/console/operations/{operation_id}"
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get(page_url)
    assert page.status_code == 200 and 'id="preview-diff"' in page.text
    assert 'id="confirm"' not in page.text and 'id="cancel"' not in page.text
    assert post_form(client, page_url, f"{page_url}/confirm").status_code == 403
    assert post_form(client, page_url, f"{page_url}/cancel", {"reason": "forged"}).status_code == 403

    assert console_login(client, other.email).status_code == 303  # the owner (and admin) of another tenant
    own_page = f"/console/tenants/{other.tenant_id}"
    assert client.get(page_url).status_code == 404
    assert client.get(f"{page_url}/events").status_code == 404
    assert post_form(client, own_page, f"{page_url}/cancel", {"reason": "not mine"}).status_code == 404
    assert post_form(client, own_page, f"{page_url}/confirm").status_code == 404
    with services.db.transaction(Scope.system()) as session:
        assert session.get(Operation, uuid.UUID(operation_id)).status == "AWAITING_CONFIRMATION"


def test_an_operator_cancels_a_move_through_the_console_and_its_reserved_cluster_is_released(
        client: TestClient, services: Services, dedicated_cluster: str):
    tenant = sign_up(client, services, tier="mid")
    accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "high"}, headers=tenant.headers).json()
    run_queue(services)
    operation_id = accepted["operation"]["id"]
    with services.db.transaction(Scope.system()) as session:
        placed = session.get(Tenant, uuid.UUID(tenant.tenant_id)).placement
        operation = session.get(Operation, uuid.UUID(operation_id))
        assert operation.status == "AWAITING_CONFIRMATION"
        reserved = operation.params["placement"].partition(":")[2]
        assert session.scalar(select(Cluster.baseline_stack).where(Cluster.name == reserved)) == f"dedicated-{tenant.slug}"
    page_url = f"/console/operations/{operation_id}"
    platform_viewer(client, services, PlatformRole.OPERATOR)
    assert post_form(client, page_url, f"{page_url}/cancel", {"reason": "  "}).status_code == 422
    cancelled = post_form(client, page_url, f"{page_url}/cancel", {"reason": "wrong tier"})
    assert cancelled.status_code == 303 and cancelled.headers["location"] == page_url
    page = client.get(page_url).text
    assert "badge-failed" in page and "cancelled by user:" in page and ": wrong tier" in page
    assert 'id="retry"' not in page and 'id="cancel"' not in page
    with services.db.transaction(Scope.system()) as session:
        operation = session.get(Operation, uuid.UUID(operation_id))
        assert operation.status == "FAILED" and operation.error.endswith(": wrong tier")
        assert next(s for s in operation.steps if s["name"] == "confirm")["status"] == "failed"
        assert session.scalar(select(Cluster.baseline_stack).where(Cluster.name == reserved)) is None
        state = session.get(Tenant, uuid.UUID(tenant.tenant_id))
        assert (state.status, state.tier, state.placement) == ("ACTIVE", "mid", placed)
        audit = session.scalars(select(AuditRecord).where(AuditRecord.action == "operation.cancel",
                                                          AuditRecord.resource == f"operation:{operation_id}")).all()
        assert [(r.details["reason"], r.details["was"]) for r in audit] == [("wrong tier", "AWAITING_CONFIRMATION")]


def test_the_api_cancels_an_operation_waiting_for_capacity_once_and_answers_the_same_again(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    waiting = add_operation(services, tenant.tenant_id, "AWAITING_CAPACITY", [step("place", "waiting", note="no room"),
                                                                               new_step("billing")])
    url = f"/v1/operations/{waiting}/cancel"
    assert client.post(url, json={}, headers=tenant.headers).status_code == 422
    assert client.post(url, json={"reason": "x"}, headers=platform_user(client, services, PlatformRole.AUDITOR)).status_code == 404
    first = client.post(url, json={"reason": "no hurry"}, headers=tenant.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"id": waiting, "kind": "change_tier", "status": "FAILED", "url": f"/v1/operations/{waiting}"}
    again = client.post(url, json={"reason": "another reason"}, headers=tenant.headers)
    assert again.status_code == 200 and again.json() == first.json()
    operation = client.get(f"/v1/operations/{waiting}", headers=tenant.headers).json()
    assert operation["error"].startswith("cancelled by user:") and operation["error"].endswith(": no hurry")
    operator = platform_user(client, services, PlatformRole.OPERATOR)
    retry = client.post(f"/v1/operations/{waiting}/retry", headers=operator)
    assert retry.status_code == 409 and retry.json()["type"].endswith("/cancelled")
    finished = client.post(f"/v1/operations/{tenant.operation_id}/cancel", json={"reason": "late"}, headers=operator)
    assert finished.status_code == 409 and finished.json()["type"].endswith("/not-cancellable")
    assert client.get(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).json()["status"] == "ACTIVE"
    with services.db.transaction(Scope.system()) as session:
        audit = session.scalars(select(AuditRecord).where(AuditRecord.action == "operation.cancel",
                                                          AuditRecord.resource == f"operation:{waiting}")).all()
        assert len(audit) == 1 and audit[0].details == {"reason": "no hurry", "was": "AWAITING_CAPACITY"}
    described = client.get("/openapi.json").json()["paths"]["/v1/operations/{operation_id}/cancel"]["post"]
    assert {"403", "404", "409", "422"} <= set(described["responses"])


def test_the_stream_sends_events_in_order_with_ids_resumes_after_the_last_id_and_ends(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    operation_id = add_operation(services, tenant.tenant_id, "SUCCEEDED", [step("stack_up", "succeeded")], events=3)
    platform_viewer(client, services, PlatformRole.AUDITOR)
    events = stream(client, operation_id)
    progress = [e for e in events if e["event"] == "progress"]
    ids = [e["id"] for e in progress]
    assert len(ids) == 3 and ids == sorted(ids)
    assert [f"server-{n}" in e["data"] for n, e in enumerate(progress)] == [True] * 3
    assert [e["event"] for e in events[-2:]] == ["operation", "end"] and '"SUCCEEDED"' in events[-1]["data"]
    resumed = stream(client, operation_id, headers={"Last-Event-ID": str(ids[0])})
    assert [e["id"] for e in resumed if e["event"] == "progress"] == ids[1:]
    assert [e["id"] for e in stream(client, operation_id, params={"after": ids[1]}) if e["event"] == "progress"] == ids[2:]


def test_the_stream_follows_a_running_operation_live_until_it_finishes(client: TestClient, services: Services):
    tenant = sign_up(client, services)
    operation_id = add_operation(services, tenant.tenant_id, "RUNNING", [step("stack_up", "running")], events=1)
    platform_viewer(client, services, PlatformRole.OPERATOR)

    def engine_progresses() -> None:
        time.sleep(1.2)
        with services.db.transaction(Scope.system()) as session:
            operation = session.get(Operation, uuid.UUID(operation_id))
            session.add(progress_record(operation, 7))
        time.sleep(0.8)
        with services.db.transaction(Scope.system()) as session:
            operation = session.get(Operation, uuid.UUID(operation_id))
            operation.steps = [step("stack_up", "succeeded")]
            operation.status, operation.finished_at, operation.current_step = "SUCCEEDED", datetime.now(UTC), None

    engine = threading.Thread(target=engine_progresses)
    engine.start()
    started = time.monotonic()
    events = stream(client, operation_id)
    engine.join()
    assert time.monotonic() - started >= 2  # it waited for the engine
    kinds = [(e["event"], "server-7" in e["data"]) for e in events]
    assert kinds[0] == ("progress", False) and ("progress", True) in kinds and kinds[-1][0] == "end"
    states = [json.loads(e["data"]) for e in events if e["event"] == "operation"]
    assert states[0]["status"] == "RUNNING" and states[0]["finished_at"] is None
    assert states[-1]["status"] == "SUCCEEDED"
    with services.db.transaction(Scope.system()) as session:
        finished_at = session.get(Operation, uuid.UUID(operation_id)).finished_at
    # The page's "Finished" cell is filled from the last state, without a reload.
    assert datetime.fromisoformat(states[-1]["finished_at"]) == finished_at


def test_another_tenants_operation_looks_exactly_like_one_that_does_not_exist(client: TestClient, services: Services):
    mine, theirs = sign_up(client, services), sign_up(client, services)
    assert console_login(client, mine.email).status_code == 303
    other = client.get(f"/console/operations/{theirs.operation_id}")
    missing = client.get(f"/console/operations/{uuid.uuid4()}")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
