"""``python -m api.drift``: the drift watcher (automation/watch.py) with the platform's sink.

Every drift it sees becomes a finding row and an audit record, and, for tenants whose tier
corrects automatically, a drift_correction operation on the job queue (see recorder.py);
the workers run it like any other operation. Run one watcher per shard of the clusters
(`--shard I/N`); two watchers on the same shard would record every finding twice.
"""

from __future__ import annotations

import argparse
import logging
import sys

from api.db.schema_state import DatabaseNotMigrated, ensure_migrated
from api.drift.recorder import DriftRecorder
from api.logs import configure_logging
from api.services import Services
from api.settings import ServiceNotConfigured, get_settings
from automation.operations import StackOperations
from automation.settings import Settings as AutomationSettings
from automation.watch import DriftWatcher, parse_shard, watch_metrics

log = logging.getLogger("api.drift")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--correction-interval", type=float, default=600,
                        help="at most one drift correction per tenant in this many seconds")
    parser.add_argument("--resync", type=float, default=30, help="seconds between checkpoint re-reads")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics here (127.0.0.1)")
    parser.add_argument("--shard", default="0/1", help="I/N: only the clusters whose name hashes to I modulo N")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        services = Services.build(settings)
        ensure_migrated(services.db.engine)
    except (ServiceNotConfigured, DatabaseNotMigrated) as exc:
        sys.exit(f"error: {exc}")
    recorder = DriftRecorder(services, correction_interval=args.correction_interval)
    metrics = watch_metrics(args.metrics_port)

    def sink(event) -> None:
        metrics(event)
        log.info("drift watch: %s %s %s", event.event, event.stack or "",
                 "; ".join(str(f) for f in event.findings) or event.detail)
        recorder(event)

    watcher = DriftWatcher(StackOperations(AutomationSettings.from_env()), sink, resync_seconds=args.resync,
                           shard=parse_shard(args.shard))
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
