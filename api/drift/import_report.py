"""``python -m api.drift.import_report FILE``: store a scheduled drift job's report
(`cameleer drift --all --json --report FILE`, a cron job's or the CI workflow's
`drift-report.json` artifact) in the database, where the console's drift page reads it.

Secret-looking values are masked before the report is stored. Storing the same document
again changes nothing (the key is its digest). Audited as `drift.report_stored` under
``$CAMELEER_ACTOR`` (else user@host), who is also kept as the report's requester.
Exit codes: 0 stored or stored already; 1 not stored (the reason on stderr).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

from api.audit.chain import AuditMeta, append
from api.db.models import DriftReportKind
from api.db.schema_state import DatabaseNotMigrated, ensure_migrated
from api.db.session import Scope
from api.drift.reports import MAX_REPORT_BYTES, NotADriftReport, redacted, summary_of
from api.drift.store import Retention, store_report
from api.services import Services
from api.settings import ServiceNotConfigured, get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.drift.import_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="a cameleer.drift/v1 report")
    args = parser.parse_args(argv)
    try:
        document = _read(args.file)
        services = Services.build(get_settings())
        ensure_migrated(services.db.engine)
    except (OSError, ValueError, ServiceNotConfigured, DatabaseNotMigrated) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report_id = store_scheduled(services, document, _actor())
    print(f"drift report {args.file.name}: " + (f"stored as #{report_id}" if report_id else "stored already"))
    return 0


def store_scheduled(services: Services, document: dict, actor: str) -> int | None:
    """Store a scheduled run's report; its id, or None when the same document is stored already."""
    digest = hashlib.sha256(json.dumps(redacted(document), sort_keys=True, default=str).encode()).hexdigest()
    with services.db.transaction(Scope.system()) as db:
        report_id = store_report(db, document, kind=DriftReportKind.SCHEDULED, requested_by=actor,
                                 idempotency_key=f"sha256:{digest}", retention=Retention.of(services.settings))
        if report_id is not None:
            append(db, AuditMeta(actor=actor, request_id="api.drift.import_report"), "drift.report_stored", "drift",
                   details={"report": report_id, "kind": DriftReportKind.SCHEDULED.value,
                            "summary": summary_of(document)})
    return report_id


def _read(path: Path) -> dict:
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise ValueError(f"{path.name} is larger than {MAX_REPORT_BYTES // (1024 * 1024)} MiB")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        redacted(document)
    except (UnicodeDecodeError, json.JSONDecodeError, NotADriftReport) as exc:
        raise ValueError(f"{path.name} is not a cameleer.drift/v1 report ({type(exc).__name__})") from None
    return document


def _actor() -> str:
    return os.environ.get("CAMELEER_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


if __name__ == "__main__":
    raise SystemExit(main())
