"""A tenant's history is served with the real stack driver while the engine cannot run: the
stack's updates come from the state backend (the layout automation.history_reader reads is
pinned against `pulumi stack history --json` in tests/integration/test_automation_engine.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.stacks.automation_adapter import AutomationStackDriver
from api.stacks.driver import ChangeOrigin
from automation.history import UpdateMetadata
from automation.workspace import WorkspaceFactory
from tests.api.conftest import run_queue, sign_up

STARTED, ENDED = 1796556493, 1796556497


def _write_update(state, stack: str, message: str, started: int = STARTED) -> None:
    """One update's document where the engine's file backend keeps it."""
    directory = state / ".pulumi" / "history" / "cameleer" / stack
    directory.mkdir(parents=True, exist_ok=True)
    document = {"kind": "update", "startTime": started, "message": message, "environment": {"ci.system": "cameleer"},
                "config": {}, "result": "succeeded", "endTime": ENDED, "version": 0,
                "resourceChanges": {"create": 12}}
    (directory / f"{stack}-{started}000000000.history.json").write_text(json.dumps(document))


@pytest.fixture
def engine_cannot_run(monkeypatch, tmp_path):
    def no_engine(*args, **kwargs):
        raise AssertionError("the API process started the engine")

    monkeypatch.setattr(WorkspaceFactory, "run_cli", no_engine)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    monkeypatch.delenv("CAMELEER_BACKEND_URL", raising=False)
    return tmp_path


def _history_through_the_real_driver(settings, services, tenant) -> dict:
    """The tenant's history from an app whose stack driver is the real engine adapter."""
    real = Services.build(settings, driver=AutomationStackDriver(), billing=services.billing)
    try:
        with TestClient(create_app(settings, services=real)) as api:
            return api.get(f"/v1/tenants/{tenant.tenant_id}/history", headers=tenant.headers).json()
    finally:
        real.db.dispose()


def test_history_is_read_from_the_backend_without_the_engine(client, services, settings, engine_cannot_run):
    tenant = sign_up(client, services)
    message = UpdateMetadata("control-plane", f"provision tenant {tenant.slug}", operation_id=tenant.operation_id,
                             kind="control-plane").message()
    _write_update(engine_cannot_run, f"tenant-{tenant.slug}", message)
    history = _history_through_the_real_driver(settings, services, tenant)
    assert history["stack_history_error"] is None
    [stack] = [e for e in history["entries"] if e["source"] == "stack"]
    assert (stack["action"], stack["result"]) == ("stack.update", "succeeded")
    assert stack["details"]["message"] == message and stack["details"]["resource_changes"] == {"create": 12}
    assert stack["details"]["operation_id"] == tenant.operation_id
    assert stack["at"].startswith("2026-12-06T") and stack["details"]["ended_at"].startswith("2026-12-06T")
    assert any(e["action"] == "tenant.signup" for e in history["entries"])


def test_a_tenant_whose_stack_was_never_updated_has_no_stack_entries(client, services, settings, engine_cannot_run):
    tenant = sign_up(client, services)
    history = _history_through_the_real_driver(settings, services, tenant)
    assert history["stack_history_error"] is None
    assert {e["source"] for e in history["entries"]} == {"audit"}
    assert uuid.UUID(history["tenant_id"]) == uuid.UUID(tenant.tenant_id)


def test_an_update_naming_no_operation_of_the_tenant_links_to_none(client, services, settings, engine_cannot_run):
    """Updates recorded before the operation's id was written named the tenant's id where the
    operation's belongs; the history does not pass that (or another tenant's operation) off
    as the update's operation."""
    tenant, other = sign_up(client, services), sign_up(client, services)
    stack = f"tenant-{tenant.slug}"
    messages = [UpdateMetadata("control-plane", "provision", operation_id=wrong, kind="control-plane").message()
                for wrong in (tenant.tenant_id, other.operation_id)]
    for offset, message in enumerate(messages):
        _write_update(engine_cannot_run, stack, message, started=STARTED + offset)
    history = _history_through_the_real_driver(settings, services, tenant)
    updates = [e["details"] for e in history["entries"] if e["source"] == "stack"]
    assert [(u["message"], u["operation_id"]) for u in updates] == [(m, None) for m in reversed(messages)]


def test_each_stack_update_names_the_operation_that_made_it(client, services, driver):
    """Signup, suspend, drift correction: each engine update carries its own operation's id
    (the fake engine keeps what it was given), and the history links the update to it."""
    tenant = sign_up(client, services)
    suspended = client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=tenant.headers)
    assert suspended.status_code == 202, suspended.text
    run_queue(services)
    history = client.get(f"/v1/tenants/{tenant.tenant_id}/history", headers=tenant.headers).json()
    stack = [e for e in history["entries"] if e["source"] == "stack"]
    assert [e["details"]["operation_id"] for e in stack] == [suspended.json()["operation"]["id"], tenant.operation_id]
    assert tenant.tenant_id not in str([e["details"]["operation_id"] for e in stack])
    details = client.get("/openapi.json").json()["components"]["schemas"]["HistoryEntry"]["properties"]["details"]
    assert "operation_id" in details["description"]


def test_a_drift_correction_carries_its_requesters_reason_to_the_engine(client, services, driver, operator_headers):
    tenant = sign_up(client, services)
    reason = "replicas scaled by hand during incident 42"
    asked = client.post(f"/v1/platform/drift/tenants/{tenant.tenant_id}/correction", json={"reason": reason},
                        headers={**operator_headers, "Idempotency-Key": uuid.uuid4().hex})
    assert asked.status_code == 202, asked.text
    run_queue(services)
    operation_id = uuid.UUID(asked.json()["operation"]["id"])
    assert [origin for method, origin in driver.origins if method == "correct_drift"] == [
        ChangeOrigin(operation_id, reason=reason)]
    history = client.get(f"/v1/tenants/{tenant.tenant_id}/history", headers=tenant.headers).json()
    newest = next(e for e in history["entries"] if e["source"] == "stack")
    assert newest["details"]["operation_id"] == str(operation_id)
