"""``python -m api.worker``: run operations from the job queue. Start as many as you like;
the per-tenant lock keeps one operation per tenant running at a time."""

from __future__ import annotations

import logging
import sys

from prometheus_client import start_http_server

from api.db.schema_state import DatabaseNotMigrated, ensure_migrated
from api.jobs.app import build_job_app
from api.logs import configure_logging
from api.services import Services
from api.settings import ServiceNotConfigured, get_settings

log = logging.getLogger("api.worker")


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        services = Services.build(settings)
    except ServiceNotConfigured as exc:
        sys.exit(f"error: {exc}")
    try:
        ensure_migrated(services.db.engine)
    except DatabaseNotMigrated as exc:
        log.critical(str(exc))
        return 2
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr="127.0.0.1")
    app = build_job_app(settings)
    log.info("worker starting on queue %s", settings.job_queue)
    app.run_worker(
        queues=[settings.job_queue],
        concurrency=settings.worker_concurrency,
        additional_context={"services": services},
        stalled_worker_timeout=settings.stalled_after_seconds,
        update_heartbeat_interval=max(1.0, settings.stalled_after_seconds / 3),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
