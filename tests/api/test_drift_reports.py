"""Drift reports in the database (api/drift/store.py, api/drift/import_report.py): masked
before they are stored, stored once per key, pruned by the writer, the newest read back, and
out of the app role's reach (they span tenants)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import ProgrammingError

from api.db.models import AuditRecord, DriftReport, DriftReportKind
from api.db.session import Scope
from api.drift import import_report
from api.drift.reports import MASK
from api.drift.store import Retention, newest_report, prune, store_report
from api.services import Services
from tests.api.test_console_drift import SECRET_VALUES, report_for


def store(services: Services, document: dict, retention: Retention = Retention(50, 30)) -> int | None:
    with services.db.transaction(Scope.system()) as db:
        return store_report(db, document, kind=DriftReportKind.ON_DEMAND, requested_by="user:x",
                            idempotency_key=uuid.uuid4().hex, retention=retention)


def stored_ids(services: Services) -> list[int]:
    with services.db.transaction(Scope.system()) as db:
        return list(db.scalars(select(DriftReport.id).order_by(DriftReport.id)))


def test_a_report_is_stored_masked_and_the_newest_is_read_back(services: Services):
    first = store(services, report_for("tenant-first"))
    second = store(services, report_for("tenant-second"))
    with services.db.transaction(Scope.system()) as db:
        body = db.get(DriftReport, second).body
        newest = newest_report(db)
    properties = body["stacks"][0]["drift"]["resources"]
    assert [p["old"] for r in properties for p in r["properties"]] == [2, MASK, MASK]
    assert [p["new"] for r in properties for p in r["properties"]] == [7, MASK, MASK]
    assert not any(value in json.dumps(body) for value in SECRET_VALUES)
    assert first < second and newest.id == second and list(newest.stacks) == ["tenant-second"]
    assert newest.kind == "on-demand" and newest.requested_by == "user:x"


def test_the_writer_prunes_to_the_newest_n_in_its_transaction(services: Services):
    for n in range(5):
        store(services, report_for(f"tenant-p{n}"))
    before = stored_ids(services)
    newest = store(services, report_for("tenant-p5"), Retention(keep=3, keep_days=None))
    assert stored_ids(services) == before[-2:] + [newest]


def test_reports_older_than_the_days_kept_go_but_never_the_newest(services: Services):
    with services.db.transaction(Scope.system()) as db:
        db.execute(delete(DriftReport))
        old = DriftReport(kind="scheduled", idempotency_key=uuid.uuid4().hex, body=report_for("tenant-old"),
                          created_at=datetime.now(UTC) - timedelta(days=40))
        db.add(old)
        db.flush()
        assert prune(db, Retention(keep=50, keep_days=30)) == 0  # the only one, so the newest: it stays
    kept = store(services, report_for("tenant-new"), Retention(keep=50, keep_days=30))
    assert stored_ids(services) == [kept]


def test_the_same_scheduled_report_is_stored_and_audited_once(services: Services):
    document = report_for(f"tenant-{uuid.uuid4().hex[:8]}")
    first = import_report.store_scheduled(services, document, "ci:drift")
    assert first is not None
    assert import_report.store_scheduled(services, json.loads(json.dumps(document)), "ci:drift") is None
    with services.db.transaction(Scope.system()) as db:
        audits = list(db.scalars(select(AuditRecord).where(AuditRecord.action == "drift.report_stored",
                                                           AuditRecord.details["report"].as_integer() == first)))
        row = db.get(DriftReport, first)
    assert len(audits) == 1 and audits[0].actor == "ci:drift" and audits[0].details["summary"]["drifted"] == 1
    assert row.kind == "scheduled" and row.requested_by == "ci:drift"
    assert not any(value in json.dumps(audits[0].details) for value in SECRET_VALUES)


@pytest.mark.parametrize("content", ["not a report", json.dumps({"schema": "cameleer.update/v1"}), "[]"])
def test_the_import_refuses_what_is_not_a_drift_report(services: Services, tmp_path, capsys, content):
    path = tmp_path / "notes.json"
    path.write_text(content)
    with services.db.transaction(Scope.system()) as db:
        before = db.scalar(select(func.count()).select_from(DriftReport))
    assert import_report.main([str(path)]) == 1
    assert "is not a cameleer.drift/v1 report" in capsys.readouterr().err
    with services.db.transaction(Scope.system()) as db:
        assert db.scalar(select(func.count()).select_from(DriftReport)) == before


def test_the_app_role_cannot_read_reports_that_span_tenants(services: Services):
    store(services, report_for("tenant-secretive"))
    with pytest.raises(ProgrammingError, match="permission denied"):
        with services.db.transaction(Scope.tenant(uuid.uuid4())) as db:
            db.scalar(select(func.count()).select_from(DriftReport))
