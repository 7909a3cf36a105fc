"""An operation's page: its steps, the engine's progress live, a preview's diff, and the
operators' (and owners') decisions: confirm, cancel, retry, through the API's own functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import select

from api.auth.dependencies import TenantContext, check_tenant_access
from api.auth.roles import READERS, TenantRole
from api.console import progress
from api.console.access import tenant_scope
from api.console.deps import ConsoleViewer, CsrfChecked
from api.console.errors import ConsoleError
from api.console.session import PATH, Viewer
from api.console.templating import render
from api.db.models import Operation, OperationStatus, Tenant
from api.db.session import Scope
from api.dependencies import ServicesDep
from api.operations.router import get_operation
from api.problems import forbidden, not_found
from api.services import Services
from api.tenants.lifecycle import CANCELLABLE, cancel_operation, cancellation, confirm_operation, retry_operation

router = APIRouter(prefix=f"{PATH}/operations")
EVENTS_ON_PAGE = 1000


@contextmanager
def operation_scope(request: Request, viewer: Viewer, services: Services, operation_id: uuid.UUID) -> Iterator[TenantContext]:
    """The API's context of the operation's tenant; an operation not the viewer's is not found."""
    with services.db.session(Scope.system()) as lookup:
        tenant_id = lookup.scalar(select(Operation.tenant_id).where(Operation.id == operation_id))
    if tenant_id is None:
        raise not_found("Operation")
    check_tenant_access(viewer.principal, tenant_id, TenantRole.ADMIN, READERS, what="Operation")
    with tenant_scope(request, viewer, services, tenant_id) as ctx:
        yield ctx


def may_decide(viewer: Viewer, tenant_id: uuid.UUID) -> bool:
    """The API's rule for confirm and cancel: the tenant's owner, or a platform operator."""
    role = viewer.tenant_role(tenant_id)
    return viewer.is_operator or (role is not None and role.satisfies(TenantRole.OWNER))


@router.get("/{operation_id}")
def operation_page(request: Request, operation_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep):
    with operation_scope(request, viewer, services, operation_id) as ctx:
        operation = get_operation(operation_id, ctx, 0, EVENTS_ON_PAGE)
        with ctx.db.begin():
            tenant = ctx.db.get(Tenant, ctx.tenant_id)
    was_cancelled = cancellation(operation.params)
    status = OperationStatus(operation.status)
    decides = may_decide(viewer, ctx.tenant_id)
    return render(
        request, viewer, "operation.html", area="tenants", operation=operation, tenant=tenant,
        steps=progress.step_rows(operation.steps), events=[progress.event_row(e) for e in operation.events],
        last_event_id=operation.events[-1].id if operation.events else 0, live=not status.finished,
        preview=progress.preview_of(operation), shown_value=progress.shown_value, diff_class=progress.diff_class,
        cancelled=was_cancelled,
        can_confirm=decides and status is OperationStatus.AWAITING_CONFIRMATION,
        can_cancel=decides and status in CANCELLABLE,
        can_retry=viewer.is_operator and status is OperationStatus.FAILED and not was_cancelled,
    )


@router.get("/{operation_id}/events")
def operation_events(
    request: Request, operation_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep,
    after: Annotated[int, Query(ge=0, description="Only events with a larger id")] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Server-sent events: the engine's progress records and the operation's state, live."""
    with operation_scope(request, viewer, services, operation_id) as ctx:
        principal, tenant_id = ctx.principal, ctx.tenant_id
    resume_after = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

    def read(last: int):
        with services.db.session(Scope.tenant(tenant_id)) as session:
            ctx = TenantContext(request, principal, services, session, tenant_id)
            return get_operation(operation_id, ctx, last, progress.EVENTS_PER_READ)

    return StreamingResponse(progress.progress_stream(read, resume_after), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


def _decision(request: Request, viewer: Viewer, services: Services, operation_id: uuid.UUID, allowed, act):
    with operation_scope(request, viewer, services, operation_id) as ctx:
        if not allowed(viewer, ctx.tenant_id):
            raise forbidden("Only the tenant's owner or a platform operator may do this.")
        act(ctx)
    return RedirectResponse(f"{PATH}/operations/{operation_id}", status_code=303)


@router.post("/{operation_id}/confirm", dependencies=[CsrfChecked])
def confirm(request: Request, operation_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep):
    return _decision(request, viewer, services, operation_id, may_decide,
                     lambda ctx: confirm_operation(ctx, operation_id))


@router.post("/{operation_id}/cancel", dependencies=[CsrfChecked])
def cancel(
    request: Request, operation_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
):
    if not reason.strip():
        raise ConsoleError(422, "A reason is needed", "Say why the operation is cancelled; it is recorded.")
    return _decision(request, viewer, services, operation_id, may_decide,
                     lambda ctx: cancel_operation(ctx, operation_id, reason.strip()))


@router.post("/{operation_id}/retry", dependencies=[CsrfChecked])
def retry(request: Request, operation_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep):
    return _decision(request, viewer, services, operation_id, lambda v, _: v.is_operator,
                     lambda ctx: retry_operation(ctx, operation_id))
