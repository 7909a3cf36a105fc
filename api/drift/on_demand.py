"""On-demand drift checks: an operator asks, a worker compares every stack with its cluster
(the drift job's own check, through the stack driver) and keeps the JSON report where the
console reads the scheduled job's (``Settings.drift_reports``).

At most one check waits in the queue at a time (a second request while one waits is told so,
not queued again). The request and the result are audited; the report itself holds property
values with secrets redacted by the automation layer, and the console masks them again.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from api.audit.chain import AuditMeta, append
from api.db.session import Scope, ScopedSession
from api.jobs.enqueue import AlreadyQueued, enqueue_task
from api.services import Services

CHECK_TASK = "drift_check"
CHECK_LOCK = "drift-check"
ACTOR = "system:drift-check"


def request_check(db: ScopedSession, meta: AuditMeta, *, queue: str) -> bool:
    """Queue a check of every stack; False when one is waiting already (nothing is queued)."""
    try:
        enqueue_task(db, CHECK_TASK, {}, queue=queue, lock=CHECK_LOCK)
    except AlreadyQueued:
        return False
    append(db, meta, "drift.check_requested", "drift")
    return True


def run_check(services: Services, now: datetime | None = None) -> Path:
    """Run the check and keep its report; answers the report's path."""
    report = services.driver.check_drift()
    path = _keep(services.settings.drift_reports(), report, now or datetime.now(UTC))
    with services.db.transaction(Scope.system()) as db:
        append(db, AuditMeta(actor=ACTOR), "drift.checked", "drift",
               details={"report": path.name, "summary": report.get("summary", {})})
    return path


def _keep(directory: Path, report: dict, now: datetime) -> Path:
    """Written whole (a temporary file renamed): a reader never sees half a report."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"on-demand-{now.strftime('%Y%m%dT%H%M%S%fZ')}.json"
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as handle:
        json.dump(report, handle, indent=2, default=str)
    os.replace(handle.name, path)
    return path
