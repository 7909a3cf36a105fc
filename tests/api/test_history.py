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
from automation.history import UpdateMetadata
from automation.workspace import WorkspaceFactory
from tests.api.conftest import sign_up

STARTED, ENDED = 1796556493, 1796556497


def _write_update(state, stack: str, message: str) -> None:
    """One update's document where the engine's file backend keeps it."""
    directory = state / ".pulumi" / "history" / "cameleer" / stack
    directory.mkdir(parents=True)
    document = {"kind": "update", "startTime": STARTED, "message": message, "environment": {"ci.system": "cameleer"},
                "config": {}, "result": "succeeded", "endTime": ENDED, "version": 0,
                "resourceChanges": {"create": 12}}
    (directory / f"{stack}-{STARTED}000000000.history.json").write_text(json.dumps(document))


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
    assert stack["at"].startswith("2026-12-06T") and stack["details"]["ended_at"].startswith("2026-12-06T")
    assert any(e["action"] == "tenant.signup" for e in history["entries"])


def test_a_tenant_whose_stack_was_never_updated_has_no_stack_entries(client, services, settings, engine_cannot_run):
    tenant = sign_up(client, services)
    history = _history_through_the_real_driver(settings, services, tenant)
    assert history["stack_history_error"] is None
    assert {e["source"] for e in history["entries"]} == {"audit"}
    assert uuid.UUID(history["tenant_id"]) == uuid.UUID(tenant.tenant_id)
