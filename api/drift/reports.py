"""The drift job's JSON reports (`cameleer drift --all --json --report FILE`, schema
cameleer.drift/v1 in automation/SCHEMA.md), read from the directory operators keep them in
(``Settings.drift_reports``: the CI workflow's `drift-report.json` artifacts, or a scheduled
run on a worker writing there).

The engine's drift check reports per property what the state expects (`old`) and what the
cluster has (`new`); the watcher's findings keep paths only. The automation layer redacts
secret-looking values when it writes a report; a report is a file anybody may have put
there, so every value is checked again here and masked before a page sees it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from automation.history import parse_time

log = logging.getLogger(__name__)

SCHEMA = "cameleer.drift/v1"
MASK = "[redacted]"
MAX_REPORT_BYTES = 20 * 1024 * 1024
ABSENT = object()


@dataclass(frozen=True)
class DriftedProperty:
    resource: str
    resource_type: str
    op: str
    path: str
    kind: str
    expected: str  # shown as JSON text, or "—" when the report has no value
    live: str


@dataclass
class StackReport:
    stack: str
    status: str  # clean | drifted | fixed | error
    checked_by: str | None
    checked_at: datetime | None
    error: str | None = None
    properties: list[DriftedProperty] = field(default_factory=list)


@dataclass(frozen=True)
class DriftReportFile:
    name: str
    started_at: datetime | None
    finished_at: datetime | None
    mode: str | None
    fix: bool
    summary: dict[str, int]
    stacks: dict[str, StackReport]  # only the stacks that are not clean


def latest_report(directory: Path) -> DriftReportFile | None:
    """The newest readable report in ``directory`` (by the run's start), or None."""
    reports = [report for path in _candidates(directory) if (report := _read(path)) is not None]
    return max(reports, key=lambda r: (r.started_at is not None, r.started_at or datetime.min), default=None)


def _candidates(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.glob("*.json") if p.is_file() and p.stat().st_size <= MAX_REPORT_BYTES]
    except OSError:
        return []


def _read(path: Path) -> DriftReportFile | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("schema") != SCHEMA:
            return None
        stacks = [_stack(item) for item in document.get("stacks") or () if item.get("status") != "clean"]
        return DriftReportFile(
            name=path.name, started_at=_time(document.get("started_at")), finished_at=_time(document.get("finished_at")),
            mode=document.get("mode"), fix=bool(document.get("fix")),
            summary={k: int(v) for k, v in (document.get("summary") or {}).items() if isinstance(v, int)},
            stacks={s.stack: s for s in stacks},
        )
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("drift report %s is not readable: %s", path.name, type(exc).__name__)
        return None


def _stack(item: dict[str, Any]) -> StackReport:
    drift = item.get("drift") or {}
    error = item.get("error") or None
    report = StackReport(stack=str(item["stack"]), status=str(item.get("status")), checked_by=item.get("checked_by"),
                         checked_at=_time(drift.get("checked_at")),
                         error=f"[{error.get('kind')}] {error.get('message')}" if error else None)
    for resource in drift.get("resources") or ():
        report.properties += _properties(resource)
    return report


def _properties(resource: dict[str, Any]) -> list[DriftedProperty]:
    from automation.changes import looks_secret

    type_, urn = str(resource.get("type") or ""), str(resource.get("urn") or "")
    name, op = str(resource.get("name") or urn.rsplit("::", 1)[-1]), str(resource.get("op") or "")
    properties = resource.get("properties") or [{"path": "", "kind": op}]
    out = []
    for prop in properties:
        path = str(prop.get("path") or "")
        old, new = prop.get("old", ABSENT), prop.get("new", ABSENT)
        secret = any(looks_secret(type_, urn, path, None if v is ABSENT else v) for v in (old, new))
        out.append(DriftedProperty(name, type_, op, path or "(whole resource)", str(prop.get("kind") or op),
                                   _shown(old, secret), _shown(new, secret)))
    return out


def _shown(value: Any, secret: bool) -> str:
    if value is ABSENT:
        return "—"
    if secret:
        return MASK
    return json.dumps(value, sort_keys=True, default=str)


def _time(value: Any) -> datetime | None:
    return parse_time(value)
