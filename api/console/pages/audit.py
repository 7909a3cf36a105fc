"""The audit log: filters, keyset pages, the chain's verification state, and exports.

Verifying walks the whole chain (tens of microseconds a record: seconds on a big log), so the
page shows the last verification, itself an ``audit.verify`` record, and offers "Verify now".
An export is a read, but a sensitive one: it is recorded as ``audit.export`` with its filters
and the last record id it covers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from api.audit.chain import append
from api.audit.checkpoint import chain_head, verify_platform_chain
from api.console import audit_log
from api.console.audit_log import AuditFilters
from api.console.deps import ConsoleViewer, CsrfChecked
from api.console.session import PATH, Viewer
from api.console.templating import render
from api.db.session import Scope
from api.dependencies import ServicesDep, audit_meta, mark_audited
from api.problems import Problem, forbidden
from api.services import Services

router = APIRouter(prefix=f"{PATH}/audit")

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


def _require_reader(viewer: Viewer) -> None:
    if not viewer.sees_every_tenant:
        raise forbidden("The audit log is for the platform roles operator and auditor.")


def audit_filters(
    tenant: Annotated[str, Query(max_length=100)] = "",
    actor: Annotated[str, Query(max_length=80)] = "",
    action: Annotated[str, Query(max_length=80)] = "",
    since: Annotated[str, Query(alias="from", max_length=40)] = "",
    until: Annotated[str, Query(alias="to", max_length=40)] = "",
) -> AuditFilters:
    try:
        times = audit_log.parse_time(since), audit_log.parse_time(until)
    except ValueError:
        raise Problem(422, "validation-error", "From and to are times such as 2026-12-06T18:00 (UTC).") from None
    return AuditFilters(tenant.strip(), actor.strip(), action.strip(), *times)


Filters = Annotated[AuditFilters, Depends(audit_filters)]


@router.get("")
def audit(
    request: Request, viewer: ConsoleViewer, services: ServicesDep, filters: Filters,
    before: Annotated[int | None, Query(ge=1)] = None, after: Annotated[int | None, Query(ge=0)] = None,
):
    _require_reader(viewer)
    with services.db.session(Scope.system()) as db, db.begin():
        page = audit_log.audit_page(db, filters, before=before, after=after)
        verification = audit_log.last_verification(db)
        head = audit_log.head_id(db)
    return render(request, viewer, "audit.html", area="audit", page=page, filters=filters,
                  verification=verification, head=head)


@router.post("/verify", dependencies=[CsrfChecked])
def verify_now(request: Request, viewer: ConsoleViewer, services: ServicesDep) -> RedirectResponse:
    """Verifying changes nothing, so auditors may too; the result is recorded for the next viewer."""
    _require_reader(viewer)
    with services.db.transaction(Scope.system()) as db:
        head = chain_head(db)
        verdict = verify_platform_chain(db, services)
        append(db, audit_meta(request, viewer.principal.actor), audit_log.VERIFY_ACTION, "audit_log",
               result="success" if verdict.ok else "failure",
               details=audit_log.verification_details(verdict, head.id if head else 0))
    mark_audited(request)
    return RedirectResponse(f"{PATH}/audit", status_code=303)


@router.get("/export.{kind}")
def export(request: Request, kind: str, viewer: ConsoleViewer, services: ServicesDep, filters: Filters):
    _require_reader(viewer)
    if kind not in EXPORT_TYPES:
        raise Problem(404, "not-found", "Exports are export.csv and export.jsonl.")
    with services.db.transaction(Scope.system()) as db:
        through = audit_log.head_id(db)
        append(db, audit_meta(request, viewer.principal.actor), audit_log.EXPORT_ACTION, "audit_log",
               details={"format": kind, "filters": filters.as_dict(), "through_id": through})
    mark_audited(request)
    name = f"cameleer-audit-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.{kind}"
    return StreamingResponse(_streamed(services, filters, through, kind), media_type=EXPORT_TYPES[kind],
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _streamed(services: Services, filters: AuditFilters, through: int, kind: str) -> Iterator[str]:
    lines = audit_log.csv_lines if kind == "csv" else audit_log.jsonl_lines
    with services.db.session(Scope.system()) as db, db.begin():
        yield from lines(audit_log.export_records(db, filters, through))
