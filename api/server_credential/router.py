"""Owners issue or rotate their tenant server's credential (the secret is shown once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from api.auth.dependencies import TenantContext, require
from api.auth.roles import TenantRole
from api.db.models import Tenant
from api.server_credential import store

router = APIRouter(tags=["tenant servers"])
ROTATE_SUMMARY = ("Issue or rotate the credential the tenant's servers fetch their license and sign usage "
                  "reports with (shown once; the old one stops working at once)")


class ServerCredentialOut(BaseModel):
    key_id: str
    secret: str


def rotate(ctx: TenantContext) -> ServerCredentialOut:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        issued = store.issue(ctx.db, ctx.services.tenant_secrets, tenant)
        ctx.audit("server_credential.rotate", f"tenant:{ctx.tenant_id}", key_id=issued.key_id)
    return ServerCredentialOut(key_id=issued.key_id, secret=issued.secret)


@router.post("/v1/tenants/{tenant_id}/server-credential", status_code=201, summary=ROTATE_SUMMARY)
def rotate_server_credential(ctx: Annotated[TenantContext, require(TenantRole.OWNER)]) -> ServerCredentialOut:
    return rotate(ctx)
