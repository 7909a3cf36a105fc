"""The drift reports' documents (schema cameleer.drift/v1 in automation/SCHEMA.md: the drift
job's `cameleer drift --all --json --report FILE`, or a worker's on-demand check): masked
before they are stored (``redacted``) and read for a page (``view``), masked again.

The engine's drift check reports per property what the state expects (`old`) and what the
cluster has (`new`); the watcher's findings keep paths only. The automation layer redacts
secret-looking values when it writes a report, but a stored report may come from anywhere
(an operator imports a file), so values are checked again when it is stored and when it is
read: no page sees, and the database keeps, an unmasked secret.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from automation.history import parse_time

log = logging.getLogger(__name__)

SCHEMA = "cameleer.drift/v1"
MASK = "[redacted]"
MAX_REPORT_BYTES = 20 * 1024 * 1024
ABSENT = object()


class NotADriftReport(ValueError):
    """The document is not a cameleer.drift/v1 report."""


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
class ReportView:
    """A stored report as the drift page shows it."""

    id: int
    kind: str
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mode: str | None
    fix: bool
    summary: dict[str, int]
    stacks: dict[str, StackReport]  # only the stacks that are not clean


def redacted(document: Any) -> dict[str, Any]:
    """A copy of the report with every secret-looking property value of every resource change
    (drift, correction, verification) masked; NotADriftReport for anything else."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise NotADriftReport(f"not a {SCHEMA} document")
    masked = copy.deepcopy(document)
    _mask_changes(masked)
    return masked


def summary_of(document: dict[str, Any]) -> dict[str, int]:
    """The report's counts (stacks, clean, drifted, ...), nothing else of what it says."""
    summary = document.get("summary")
    return {str(k): v for k, v in summary.items() if isinstance(v, int)} if isinstance(summary, dict) else {}


def _mask_changes(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _mask_changes(item)
    elif isinstance(node, dict):
        if isinstance(node.get("properties"), list) and ("urn" in node or "type" in node):
            _mask_properties(node)
        for value in node.values():
            _mask_changes(value)


def _mask_properties(resource: dict[str, Any]) -> None:
    from automation.changes import looks_secret

    type_, urn = str(resource.get("type") or ""), str(resource.get("urn") or "")
    for prop in resource["properties"]:
        if not isinstance(prop, dict):
            continue
        path = str(prop.get("path") or "")
        present = [k for k in ("old", "new") if k in prop]
        if any(looks_secret(type_, urn, path, prop[k]) for k in present):
            prop.update({k: MASK for k in present})


def view(*, id: int, kind: str, requested_by: str | None, created_at: datetime, body: Any) -> ReportView | None:
    """The page's view of a stored report, or None (logged) when its body cannot be read."""
    try:
        if not isinstance(body, dict) or body.get("schema") != SCHEMA:
            raise NotADriftReport(f"not a {SCHEMA} document")
        stacks = [_stack(item) for item in body.get("stacks") or () if item.get("status") != "clean"]
        return ReportView(
            id=id, kind=kind, requested_by=requested_by, created_at=created_at,
            started_at=_time(body.get("started_at")), finished_at=_time(body.get("finished_at")),
            mode=body.get("mode"), fix=bool(body.get("fix")),
            summary=summary_of(body),
            stacks={s.stack: s for s in stacks},
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("drift report %s is not readable: %s", id, type(exc).__name__)
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
