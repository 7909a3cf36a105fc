"""The drift watcher's platform side (api/drift): findings rows, audit records, corrections
through the operation queue by the tenant tier's rule and at most once per interval, and
the operators' and auditors' read API. The watcher itself runs against the real engine in
tests/integration (test_control_plane_engine, test_drift_precheck)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from api.db.models import AuditRecord, DriftFinding, Operation, Tenant, TenantStatus
from api.db.session import Scope
from api.drift.recorder import DriftRecorder
from automation.precheck import Finding
from automation.watch import WatchEvent

from .conftest import run_queue, sign_up

SCALED = [{"resource": "prod-server-deployment", "what": "changed", "paths": ["spec.replicas"], "detail": ""}]


def audit_actions(services, tenant_id) -> list[str]:
    with services.db.transaction(Scope.system()) as session:
        return list(session.scalars(select(AuditRecord.action).where(
            AuditRecord.tenant_id == uuid.UUID(str(tenant_id)), AuditRecord.action.like("drift.%"))
            .order_by(AuditRecord.id)))


def corrections(services, tenant_id) -> list[Operation]:
    with services.db.transaction(Scope.system()) as session:
        return list(session.scalars(select(Operation).where(
            Operation.tenant_id == uuid.UUID(str(tenant_id)), Operation.kind == "drift_correction")))


def test_a_drifted_low_tier_tenant_gets_one_correction_per_interval_and_the_finding_closes(
        client, services, driver, auditor_headers):
    tenant = sign_up(client, services, tier="low")
    stack, now = f"tenant-{tenant.slug}", datetime.now(UTC)
    recorder = DriftRecorder(services, correction_interval=600)

    recorder(WatchEvent("drifted", stack, (Finding("prod-server-deployment", "changed", ("spec.replicas",)),), at=now))
    [operation] = corrections(services, tenant.tenant_id)
    assert operation.requested_by == "system:drift-watch" and operation.status == "PENDING"
    run_queue(services)
    [operation] = corrections(services, tenant.tenant_id)
    assert operation.status == "SUCCEEDED"
    assert driver.count("correct_drift", uuid.UUID(tenant.tenant_id)) == 1

    # Drift again within the interval (another controller fighting back): reported, not corrected.
    recorder.drifted(stack, SCALED, now + timedelta(seconds=60))
    assert len(corrections(services, tenant.tenant_id)) == 1
    recorder.cleared(stack, now + timedelta(seconds=90))
    assert audit_actions(services, tenant.tenant_id) == [
        "drift.detected", "drift.correction_requested", "drift.detected", "drift.correction_skipped", "drift.cleared"]

    found = client.get("/v1/platform/drift", params={"include_cleared": True, "tenant_id": tenant.tenant_id},
                       headers=auditor_headers)
    assert found.status_code == 200, found.text
    [row] = found.json()
    assert row["stack"] == stack and row["findings"] == SCALED and row["cleared_at"] is not None
    assert row["correction_operation_id"] == str(operation.id)
    assert client.get("/v1/platform/drift", params={"tenant_id": tenant.tenant_id},
                      headers=auditor_headers).json() == []  # nothing open any more

    # After the interval a new drift is corrected again.
    recorder.drifted(stack, SCALED, now + timedelta(seconds=700))
    assert len(corrections(services, tenant.tenant_id)) == 2


def test_a_failed_correction_leaves_the_tenant_active_and_the_finding_open(client, services, driver):
    tenant = sign_up(client, services, tier="low")
    driver.fail_times["correct_drift"] = 100
    DriftRecorder(services).drifted(f"tenant-{tenant.slug}", SCALED, datetime.now(UTC))
    run_queue(services)
    [operation] = corrections(services, tenant.tenant_id)
    assert operation.status == "FAILED" and "injected failure" in operation.error
    with services.db.transaction(Scope.system()) as session:
        assert session.get(Tenant, uuid.UUID(tenant.tenant_id)).status == TenantStatus.ACTIVE
        [row] = session.scalars(select(DriftFinding).where(DriftFinding.stack == f"tenant-{tenant.slug}"))
        assert row.cleared_at is None


def test_tiers_that_report_only_and_platform_stacks_are_recorded_without_a_correction(client, services):
    recorder = DriftRecorder(services)
    signed_up = sign_up(client, services, tier="low")
    tenant_id = uuid.UUID(signed_up.tenant_id)
    with services.db.transaction(Scope.system()) as session:
        session.get(Tenant, tenant_id).tier = "high"  # a dedicated tier: an operator corrects
    recorder.drifted(f"tenant-{signed_up.slug}", SCALED, datetime.now(UTC))
    assert audit_actions(services, tenant_id)[-2:] == ["drift.detected", "drift.correction_skipped"]
    assert corrections(services, tenant_id) == []

    shared = f"shared-x{uuid.uuid4().hex[:6]}"
    row = recorder.drifted(shared, SCALED, datetime.now(UTC))
    assert row.tenant_id is None


def test_the_drift_api_is_for_platform_readers_only(client, services):
    tenant = sign_up(client, services, tier="low")
    assert client.get("/v1/platform/drift", headers=tenant.headers).status_code == 403
    assert client.get("/v1/platform/drift").status_code == 401
