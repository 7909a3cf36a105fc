"""Drift reports in PostgreSQL (table drift_reports, platform data read and written in the
system scope): every API process and worker sees the same reports whatever host wrote them.

A report is masked before it is stored (api.drift.reports.redacted), written at most once per
idempotency key, and the writer prunes in the same transaction: a report goes once it is not
among the newest ``keep``, or once it is older than ``keep_days``; the newest always stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from api.db.models import DriftReport, DriftReportKind
from api.db.session import ScopedSession
from api.drift.reports import ReportView, redacted, view
from api.settings import Settings

NEWEST_FIRST = (DriftReport.created_at.desc(), DriftReport.id.desc())


@dataclass(frozen=True)
class Retention:
    keep: int
    keep_days: float | None

    @classmethod
    def of(cls, settings: Settings) -> Retention:
        return cls(settings.drift_reports_keep, settings.drift_reports_keep_days)


def store_report(db: ScopedSession, document: Any, *, kind: DriftReportKind, requested_by: str | None,
                 idempotency_key: str, retention: Retention) -> int | None:
    """Store the masked report and prune; its id, or None when this key stored one already.
    NotADriftReport when the document is none."""
    body = redacted(document)
    report_id = db.scalar(
        insert(DriftReport)
        .values(kind=kind.value, requested_by=requested_by, idempotency_key=idempotency_key, body=body)
        .on_conflict_do_nothing(index_elements=[DriftReport.idempotency_key])
        .returning(DriftReport.id)
    )
    if report_id is not None:
        prune(db, retention)
    return report_id


def prune(db: ScopedSession, retention: Retention) -> int:
    """Delete the reports the retention no longer keeps; how many."""
    newest = select(DriftReport.id).order_by(*NEWEST_FIRST)
    stale = DriftReport.id.not_in(newest.limit(retention.keep))
    if retention.keep_days is not None:
        too_old = DriftReport.created_at < func.now() - timedelta(days=retention.keep_days)
        stale = stale | (too_old & DriftReport.id.not_in(newest.limit(1)))
    return db.execute(delete(DriftReport).where(stale)).rowcount


def newest_report(db: ScopedSession) -> ReportView | None:
    """The newest stored report as the page shows it; None when there is none (or it cannot be read, logged)."""
    row = db.scalar(select(DriftReport).order_by(*NEWEST_FIRST).limit(1))
    if row is None:
        return None
    return view(id=row.id, kind=row.kind, requested_by=row.requested_by, created_at=row.created_at, body=row.body)
