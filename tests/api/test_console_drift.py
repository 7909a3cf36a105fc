"""The console's drift page: the watcher's findings with the newest stored drift report's values
(secrets masked; reports in the database, api/drift/store.py), roles, and an operator's
correction with a reason (idempotent, audited)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.roles import PlatformRole
from api.db.models import AuditRecord, DriftFinding, DriftReport, Operation, User
from api.db.session import Scope
from api.drift.import_report import store_scheduled
from api.services import Services
from tests.api.conftest import run_queue, sign_up
from tests.api.console_support import console_login, csrf_of, platform_viewer, post_form

SECRET_VALUES = ("hunter2-expected-password", "live-token-value-9f8e")
KEY_INPUT = re.compile(r'name="idempotency_key" value="([^"]+)"')


def report_for(stack: str) -> dict:
    """A cameleer.drift/v1 report as `cameleer drift --all --json --report` writes it, with two
    secret values left unredacted on purpose: the console must mask them itself."""
    deployment = {"urn": f"urn:pulumi:{stack}::cameleer::kubernetes:apps/v1:Deployment::prod-server",
                  "type": "kubernetes:apps/v1:Deployment", "name": "prod-server", "op": "update",
                  "properties": [{"path": "spec.replicas", "kind": "update", "replace": False, "old": 2, "new": 7}]}
    secret = {"urn": f"urn:pulumi:{stack}::cameleer::kubernetes:core/v1:Secret::db-credentials",
              "type": "kubernetes:core/v1:Secret", "name": "db-credentials", "op": "update",
              "properties": [{"path": "data.password", "kind": "update", "old": SECRET_VALUES[0], "new": "x"}]}
    config = {"urn": f"urn:pulumi:{stack}::cameleer::kubernetes:core/v1:ConfigMap::settings",
              "type": "kubernetes:core/v1:ConfigMap", "name": "settings", "op": "update",
              "properties": [{"path": "data.apiToken", "kind": "update", "old": "a", "new": SECRET_VALUES[1]}]}
    return {"schema": "cameleer.drift/v1", "started_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:01:00Z",
            "fix": False, "mode": "precheck", "exit_code": 2,
            "summary": {"stacks": 1, "clean": 0, "drifted": 1, "fixed": 0, "error": 0, "engine_checked": 1},
            "stacks": [{"stack": stack, "status": "drifted", "checked_by": "engine", "engine_reason": "x", "precheck": None,
                        "drift": {"stack": stack, "checked_at": "2026-12-01T10:00:30Z", "duration_seconds": 1.0,
                                  "drifted": True, "resource_count": 12, "resources": [deployment, secret, config]},
                        "correction": None, "verification": None, "error": None}]}


@pytest.fixture
def drifted(client: TestClient, services: Services):
    """A tenant drifted: the watcher's finding row (as api.drift.recorder writes it, here
    without its tier's automatic correction) and the drift job's reports stored, an older one first."""
    tenant = sign_up(client, services)
    stack = f"tenant-{tenant.slug}"
    # "run": each test its own documents (a stored document is stored once, by its digest).
    store_scheduled(services, {**report_for(stack), "started_at": "2026-11-01T10:00:00Z", "stacks": [],
                               "run": uuid.uuid4().hex}, "ci:drift")
    store_scheduled(services, {**report_for(stack), "run": uuid.uuid4().hex}, "ci:drift")
    with services.db.transaction(Scope.system()) as session:
        session.add(DriftFinding(stack=stack, tenant_id=uuid.UUID(tenant.tenant_id), findings=[
            {"resource": "prod-server", "what": "changed", "paths": ["spec.replicas"], "detail": ""},
            {"resource": "prod-netpol", "what": "deleted", "paths": [], "detail": "the object is gone"},
        ]))
    return tenant


def stack_section(page: str, stack: str) -> str:
    return page.split(f'id="stack-{stack}"')[1].split("</section>")[0]


def corrections(services: Services, tenant) -> list[Operation]:
    with services.db.transaction(Scope.system()) as session:
        return list(session.scalars(select(Operation).where(
            Operation.tenant_id == uuid.UUID(tenant.tenant_id), Operation.kind == "drift_correction")))


def test_an_auditor_sees_expected_and_live_values_with_secrets_masked_and_no_correction(
        client: TestClient, services: Services, drifted):
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/drift")
    assert page.status_code == 200, page.text
    section = page.text.split(f'id="stack-tenant-{drifted.slug}"')[1].split("</section>")[0]
    assert "spec.replicas" in section and "<code>2</code>" in section and "<code>7</code>" in section
    assert "data.password" in section and "data.apiToken" in section and section.count("[redacted]") >= 3
    assert not any(value in page.text for value in SECRET_VALUES)
    assert "prod-netpol" in section and "the object is gone" in section  # the watcher's, without values
    assert "the scheduled drift job of ci:drift" in page.text
    assert 'name="reason"' not in page.text and "Correct drift" not in page.text


def test_a_forged_correction_post_by_an_auditor_is_refused(client: TestClient, services: Services, drifted):
    platform_viewer(client, services, PlatformRole.AUDITOR)
    refused = post_form(client, "/console/drift", f"/console/drift/{drifted.tenant_id}/correction",
                        {"reason": "forged", "idempotency_key": uuid.uuid4().hex})
    assert refused.status_code == 403
    assert corrections(services, drifted) == []


def test_a_tenant_admin_cannot_open_the_drift_page(client: TestClient, services: Services, drifted):
    assert console_login(client, drifted.email).status_code == 303
    assert client.get("/console/drift").status_code == 403
    token = csrf_of(client.get("/console/tenants").text)
    forged = client.post(f"/console/drift/{drifted.tenant_id}/correction", follow_redirects=False,
                         data={"csrf_token": token, "reason": "mine", "idempotency_key": uuid.uuid4().hex})
    assert forged.status_code == 403 and corrections(services, drifted) == []


def test_an_operator_corrects_with_a_reason_once_even_when_the_form_is_posted_twice(
        client: TestClient, services: Services, drifted):
    platform_viewer(client, services, PlatformRole.OPERATOR)
    page = client.get("/console/drift")
    form = page.text.split(f'id="correct-tenant-{drifted.slug}"')[1].split("</form>")[0]
    data = {"csrf_token": csrf_of(page.text), "idempotency_key": KEY_INPUT.search(form).group(1),
            "reason": "replicas scaled by hand during the incident"}
    action = f"/console/drift/{drifted.tenant_id}/correction"
    first = client.post(action, data=data, follow_redirects=False)
    second = client.post(action, data=data, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    [operation] = corrections(services, drifted)
    assert first.headers["location"] == second.headers["location"] == f"/console/operations/{operation.id}"
    assert operation.params["reason"] == data["reason"] and operation.requested_by.startswith("user:")
    with services.db.transaction(Scope.system()) as session:
        [audit] = session.scalars(select(AuditRecord).where(AuditRecord.action == "drift.correction_requested",
                                                            AuditRecord.tenant_id == operation.tenant_id)).all()
        finding = session.scalar(select(DriftFinding).where(DriftFinding.stack == f"tenant-{drifted.slug}"))
    assert audit.details["reason"] == data["reason"] and audit.details["operation_id"] == str(operation.id)
    assert finding.correction_operation_id == operation.id
    # A fresh form (a new key) while that correction is unfinished: refused, nothing new.
    again = post_form(client, "/console/drift", action, {"reason": "again", "idempotency_key": uuid.uuid4().hex})
    assert again.status_code == 409 and len(corrections(services, drifted)) == 1


def test_a_correction_needs_a_reason(client: TestClient, services: Services, drifted):
    platform_viewer(client, services, PlatformRole.OPERATOR)
    for reason in ("", "   "):
        refused = post_form(client, "/console/drift", f"/console/drift/{drifted.tenant_id}/correction",
                            {"reason": reason, "idempotency_key": uuid.uuid4().hex})
        assert refused.status_code == 422, reason
    assert corrections(services, drifted) == []


def test_the_api_starts_the_same_correction_for_operators_only(
        client: TestClient, services: Services, drifted, operator_headers, auditor_headers):
    path = f"/v1/platform/drift/tenants/{drifted.tenant_id}/correction"
    body = {"reason": "put it back"}
    # The API's tenant rule: a member without the platform role is told why, anyone else 404.
    assert client.post(path, json=body, headers=drifted.headers).status_code == 403
    assert client.post(path, json=body, headers=auditor_headers).status_code == 404
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post(path, json=body, headers={**operator_headers, **key})
    assert first.status_code == 202, first.text
    replay = client.post(path, json=body, headers={**operator_headers, **key})
    assert replay.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert client.post(path, json={"reason": "other"}, headers={**operator_headers, **key}).status_code == 422
    assert len(corrections(services, drifted)) == 1


def test_an_operator_checks_every_stack_on_demand_and_another_hosts_console_reads_the_workers_report(
        client: TestClient, services: Services, driver, settings, app_clients, tmp_path):
    tenant = sign_up(client, services)
    stack = f"tenant-{tenant.slug}"
    driver.drift_report = report_for(stack)
    operator = platform_viewer(client, services, PlatformRole.OPERATOR)
    asked = post_form(client, "/console/drift", "/console/drift/check")
    assert asked.status_code == 303 and asked.headers["location"] == "/console/drift?check=queued"
    again = post_form(client, "/console/drift", "/console/drift/check")
    assert again.headers["location"] == "/console/drift?check=waiting"  # one check waits at a time

    run_queue(services)
    assert [m for m, *_ in driver.calls].count("check_drift") == 1
    with services.db.transaction(Scope.system()) as session:
        stored = session.scalar(select(DriftReport).order_by(DriftReport.id.desc()).limit(1))
        actions = list(session.scalars(select(AuditRecord).where(AuditRecord.action.like("drift.check%"))))
        operator_id = session.scalar(select(User.id).where(User.email == operator))
    assert stored.kind == "on-demand" and stored.requested_by == f"user:{operator_id}"
    assert not any(value in str(stored.body) for value in SECRET_VALUES)  # masked before it was stored
    assert [a.action for a in actions].count("drift.check_requested") == 1
    assert any(a.action == "drift.checked" and a.details["report"] == stored.id for a in actions)
    assert not list(settings.data_dir.rglob("on-demand-*.json"))  # no file another host could not see

    # The API process of another host: its own data directory, its own connections.
    other_settings = services.settings.model_copy(update={"data_dir": tmp_path / "other-pod"})
    other = Services.build(other_settings, driver=driver)
    try:
        console = app_clients(other_settings, other, "203.0.113.7")
        platform_viewer(console, other, PlatformRole.AUDITOR)
        page = console.get("/console/drift")
    finally:
        other.db.dispose()
    assert page.status_code == 200, page.text
    section = stack_section(page.text, stack)
    assert "spec.replicas" in section and "<code>7</code>" in section and "[redacted]" in section
    assert not any(value in page.text for value in SECRET_VALUES)
    assert f"#{stored.id}" in page.text and "an on-demand check" in page.text


def test_a_stored_report_with_unmasked_secrets_is_masked_when_read(client: TestClient, services: Services):
    """A row another writer put in unmasked (the writer masks, the reader does not trust it)."""
    tenant = sign_up(client, services)
    stack = f"tenant-{tenant.slug}"
    with services.db.transaction(Scope.system()) as session:
        session.add(DriftReport(kind="scheduled", idempotency_key=uuid.uuid4().hex, body=report_for(stack),
                                created_at=datetime.now(UTC)))
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/drift")
    section = stack_section(page.text, stack)
    assert "data.password" in section and "data.apiToken" in section and section.count("[redacted]") >= 3
    assert "<code>7</code>" in section
    assert not any(value in page.text for value in SECRET_VALUES)


def test_an_auditor_gets_no_check_button_and_a_forged_check_is_refused(client: TestClient, services: Services):
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/drift")
    assert "check-now" not in page.text
    forged = client.post("/console/drift/check", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert forged.status_code == 403
