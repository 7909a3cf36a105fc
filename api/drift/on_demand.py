"""On-demand drift checks: an operator asks, a worker compares every stack with its cluster
(the drift job's own check, through the stack driver) and stores the report in the database
(api.drift.store), where every API process's console reads it.

At most one check waits in the queue at a time (a second request while one waits is told so,
not queued again). The request and the result are audited; the report holds property values
with secrets redacted by the automation layer, masked again when stored and when read.
"""

from __future__ import annotations

from api.audit.chain import AuditMeta, append
from api.db.models import DriftReportKind
from api.db.session import Scope, ScopedSession
from api.drift.reports import summary_of
from api.drift.store import Retention, store_report
from api.jobs.enqueue import AlreadyQueued, enqueue_task
from api.services import Services

CHECK_TASK = "drift_check"
CHECK_LOCK = "drift-check"
ACTOR = "system:drift-check"


def request_check(db: ScopedSession, meta: AuditMeta, *, queue: str) -> bool:
    """Queue a check of every stack; False when one is waiting already (nothing is queued)."""
    try:
        enqueue_task(db, CHECK_TASK, {"requested_by": meta.actor}, queue=queue, lock=CHECK_LOCK)
    except AlreadyQueued:
        return False
    append(db, meta, "drift.check_requested", "drift")
    return True


def run_check(services: Services, job_id: int, requested_by: str | None = None) -> int | None:
    """Run the check and store its report; the report's id, or None when this job stored one
    already (a retry of a job whose worker died after the commit)."""
    report = services.driver.check_drift()
    with services.db.transaction(Scope.system()) as db:
        report_id = store_report(db, report, kind=DriftReportKind.ON_DEMAND, requested_by=requested_by,
                                 idempotency_key=f"{CHECK_TASK}:{job_id}", retention=Retention.of(services.settings))
        if report_id is not None:
            append(db, AuditMeta(actor=ACTOR), "drift.checked", "drift",
                   details={"report": report_id, "requested_by": requested_by, "summary": summary_of(report)})
    return report_id
