"""Drift across every stack, for operators and auditors; an operator's on-demand check of every
stack, and correction of one with a reason."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from api.auth.roles import OPERATORS
from api.console.access import require_operator, tenant_scope
from api.console.deps import ConsoleViewer, CsrfChecked
from api.console.drift_report import fleet_drift
from api.console.session import PATH
from api.console.templating import render
from api.db.session import Scope
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited
from api.drift.correction import MAX_REASON, request_correction
from api.drift.on_demand import request_check
from api.problems import forbidden

router = APIRouter(prefix=f"{PATH}/drift")


CHECK_NOTES = {
    "queued": "A check of every stack is queued; its report shows here once a worker has run it (refresh).",
    "waiting": "A check is already waiting for a worker; its report shows here once it has run (refresh).",
}


@router.get("")
def drift(request: Request, viewer: ConsoleViewer, services: ServicesDep, check: str = ""):
    if not viewer.sees_every_tenant:
        raise forbidden("The drift report needs the platform role operator or auditor.")
    with services.db.session(Scope.system()) as db, db.begin():
        fleet = fleet_drift(db)
        # One key per rendered form: posting the same form twice starts one correction.
        keys = {s.stack: uuid.uuid4().hex for s in fleet.stacks if s.tenant is not None}
        return render(request, viewer, "drift.html", area="drift", fleet=fleet, keys=keys, max_reason=MAX_REASON,
                      check_note=CHECK_NOTES.get(check))


@router.post("/check", dependencies=[CsrfChecked])
def check_now(request: Request, viewer: ConsoleViewer, services: ServicesDep, db: SystemDb) -> RedirectResponse:
    """An on-demand check of every stack, run by a worker (api.drift.on_demand)."""
    require_operator(viewer)
    with db.begin():
        queued = request_check(db, audit_meta(request, viewer.principal.actor), queue=services.settings.job_queue)
    mark_audited(request)
    return RedirectResponse(f"{PATH}/drift?check={'queued' if queued else 'waiting'}", status_code=303)


@router.post("/{tenant_id}/correction", dependencies=[CsrfChecked])
def correct(
    request: Request, tenant_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep,
    reason: Annotated[str, Form(min_length=1, max_length=MAX_REASON)],
    idempotency_key: Annotated[str, Form(min_length=8, max_length=200)],
) -> RedirectResponse:
    require_operator(viewer)
    with tenant_scope(request, viewer, services, tenant_id, role=None, platform=OPERATORS) as ctx:
        _, operation = request_correction(ctx, reason, f"console:{idempotency_key}")
    return RedirectResponse(f"{PATH}/operations/{operation.id}", status_code=303)
