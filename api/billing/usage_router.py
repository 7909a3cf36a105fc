"""Usage reports from tenant servers, and the owners' management of the credential they sign with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.audit.chain import AuditMeta, append
from api.auth.dependencies import TenantContext, require
from api.auth.roles import TenantRole
from api.billing import usage_reports
from api.billing.metering import record_report
from api.db.models import Tenant
from api.db.session import Scope
from api.dependencies import ServicesDep, mark_audited
from api.problems import PROBLEM_RESPONSES, Problem
from api.services import Services

router = APIRouter(tags=["billing"], responses=PROBLEM_RESPONSES)


class UsageCredentialOut(BaseModel):
    key_id: str
    secret: str


@router.post("/v1/tenants/{tenant_id}/billing/usage-credential", status_code=201,
             summary="Issue or rotate the credential the tenant's servers sign usage reports with (shown once)")
def rotate_usage_credential(ctx: Annotated[TenantContext, require(TenantRole.OWNER)]) -> UsageCredentialOut:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        issued = usage_reports.issue_credential(ctx.db, ctx.services.tenant_secrets, tenant)
        ctx.audit("billing.usage_credential.rotate", f"tenant:{ctx.tenant_id}", key_id=issued.key_id)
    return UsageCredentialOut(key_id=issued.key_id, secret=issued.secret)


class UsageReceipt(BaseModel):
    report_id: str
    recorded: bool


def _record(services: Services, key_id: str | None, signature: str | None, body: bytes,
            source_ip: str | None) -> UsageReceipt:
    with services.db.transaction(Scope.system()) as session:
        tenant_id, report = usage_reports.verify(session, services.tenant_secrets, key_id, signature, body)
    with services.db.transaction(Scope.tenant(tenant_id)) as session:
        recorded = record_report(session, tenant_id, report_id=report.report_id,
                                 ingested_bytes=report.ingested_bytes, at=report.at)
        if recorded:
            append(session, AuditMeta(f"usage-key:{key_id}", source_ip=source_ip), "billing.usage_report",
                   f"tenant:{tenant_id}", tenant_id=tenant_id,
                   details={"report_id": report.report_id, "ingested_bytes": report.ingested_bytes})
    return UsageReceipt(report_id=report.report_id, recorded=recorded)


@router.post("/v1/billing/usage-reports",
             summary="A tenant server's report of ingested bytes, signed with the tenant's usage credential")
async def usage_report(
    request: Request,
    services: ServicesDep,
    key_id: Annotated[str | None, Header(alias="Cameleer-Usage-Key")] = None,
    signature: Annotated[str | None, Header(alias="Cameleer-Signature")] = None,
) -> UsageReceipt:
    body = await request.body()
    source_ip = request.client.host if request.client else None
    try:
        receipt = await run_in_threadpool(_record, services, key_id, signature, body, source_ip)
    except usage_reports.InvalidReport as exc:
        kind = "invalid-usage-report" if exc.status == 422 else "usage-report-unauthorized"
        raise Problem(exc.status, kind, str(exc)) from None
    mark_audited(request)
    return receipt
