"""The drift page's report: every stack with open drift, from the watcher's findings and the
newest drift report in the database (api.drift.store), each drifted property with expected and
live values where a report has them (the watcher keeps paths only), and the tenant a correction
would be for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from api.db.models import DriftFinding, Tenant
from api.db.session import ScopedSession
from api.drift.reports import DriftedProperty, ReportView, StackReport
from api.drift.store import newest_report
from automation.errors import OperationError
from automation.naming import TENANT_KINDS, parse_stack_name


@dataclass
class DriftedStack:
    stack: str
    tenant: Tenant | None
    finding: DriftFinding | None = None
    report: StackReport | None = None

    @property
    def properties(self) -> list[DriftedProperty]:
        return self.report.properties if self.report else []

    @property
    def watched_paths(self) -> list[tuple[str, str]]:
        """(resource, path) the watcher found that the report does not give values for."""
        valued = {(p.resource, p.path) for p in self.properties}
        found = []
        for item in self.finding.findings if self.finding else ():
            paths = item.get("paths") or [""]
            found += [(item.get("resource") or "(stack)", path or item.get("detail") or item.get("what", ""))
                      for path in paths if (item.get("resource"), path) not in valued]
        return found

    @property
    def since(self) -> datetime | None:
        return self.finding.detected_at if self.finding else self.report.checked_at if self.report else None


@dataclass
class FleetDrift:
    stacks: list[DriftedStack] = field(default_factory=list)
    report: ReportView | None = None


def fleet_drift(db: ScopedSession) -> FleetDrift:
    report = newest_report(db)
    findings = list(db.scalars(select(DriftFinding).where(DriftFinding.cleared_at.is_(None)).order_by(DriftFinding.stack)))
    stacks: dict[str, DriftedStack] = {f.stack: DriftedStack(f.stack, None, finding=f) for f in findings}
    for name, stack_report in (report.stacks if report else {}).items():
        stacks.setdefault(name, DriftedStack(name, None)).report = stack_report
    tenants = _tenants(db, findings, list(stacks))
    for drifted in stacks.values():
        drifted.tenant = tenants.get(drifted.stack)
    return FleetDrift(sorted(stacks.values(), key=lambda s: s.stack), report)


def _tenants(db: ScopedSession, findings: list[DriftFinding], stacks: list[str]) -> dict[str, Tenant]:
    by_id = {f.stack: f.tenant_id for f in findings if f.tenant_id}
    by_slug = {name: slug for name in stacks if name not in by_id and (slug := _tenant_slug(name))}
    ids: set[uuid.UUID] = set(by_id.values())
    rows = list(db.scalars(select(Tenant).where(Tenant.id.in_(ids) | Tenant.slug.in_(set(by_slug.values())))))
    found = {t.id: t for t in rows} | {t.slug: t for t in rows}
    return {name: found[key] for name, key in (by_id | by_slug).items() if key in found}


def _tenant_slug(stack: str) -> str | None:
    try:
        ref = parse_stack_name(stack)
    except OperationError:
        return None
    return ref.slug if ref.kind in TENANT_KINDS else None
