"""A tenant's stack history, and the diff of one update."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.console.access import tenant_scope
from api.console.deps import ConsoleViewer
from api.console.session import PATH
from api.console.stack_updates import stack_updates, update_diff
from api.console.templating import render
from api.db.models import Tenant
from api.dependencies import ServicesDep
from api.problems import not_found

router = APIRouter(prefix=f"{PATH}/tenants/{{tenant_id}}/history")


@router.get("")
def history(request: Request, tenant_id: uuid.UUID, viewer: ConsoleViewer, services: ServicesDep):
    with tenant_scope(request, viewer, services, tenant_id) as ctx:
        updates, error = stack_updates(ctx)
        tenant = _tenant(ctx)
    return render(request, viewer, "history.html", area="tenants", tenant=tenant, updates=updates, error=error)


@router.get("/{version}")
def update(request: Request, tenant_id: uuid.UUID, version: Annotated[int, Path(ge=1, le=1_000_000)],
           viewer: ConsoleViewer, services: ServicesDep):
    with tenant_scope(request, viewer, services, tenant_id) as ctx:
        updates, error = stack_updates(ctx)
        found = next((u for u in updates if u.version == version), None)
        if found is None:
            raise not_found("Stack update")
        diff = update_diff(ctx, found)
        tenant = _tenant(ctx)
    return render(request, viewer, "update.html", area="tenants", tenant=tenant, update=found, diff=diff)


def _tenant(ctx) -> Tenant:
    with ctx.db.begin():
        return ctx.db.get(Tenant, ctx.tenant_id)
