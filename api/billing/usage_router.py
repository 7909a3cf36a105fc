"""Usage reports from tenant servers, signed with the tenant server's credential."""

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
from api.db.session import Scope
from api.dependencies import ServicesDep, mark_audited
from api.problems import Problem, problems
from api.server_credential import router as server_credential_router
from api.server_credential import store as server_credential
from api.server_credential.router import ServerCredentialOut
from api.services import Services

router = APIRouter(tags=["billing"])


@router.post("/v1/tenants/{tenant_id}/billing/usage-credential", status_code=201, deprecated=True,
             summary="Former name of POST /v1/tenants/{tenant_id}/server-credential")
def rotate_usage_credential(ctx: Annotated[TenantContext, require(TenantRole.OWNER)]) -> ServerCredentialOut:
    return server_credential_router.rotate(ctx)


class UsageReceipt(BaseModel):
    report_id: str
    recorded: bool


def _record(services: Services, key_id: str | None, signature: str | None, body: bytes,
            source_ip: str | None) -> UsageReceipt:
    with services.db.transaction(Scope.system()) as session:
        tenant_id, report = usage_reports.verify(session, services.tenant_secrets, key_id, signature, body,
                                                   secrets_cache=services.server_secrets)
    with services.db.transaction(Scope.tenant(tenant_id)) as session:
        recorded = record_report(session, tenant_id, report_id=report.report_id,
                                 ingested_bytes=report.ingested_bytes, at=report.at)
        if recorded:
            append(session, AuditMeta(f"usage-key:{key_id}", source_ip=source_ip), "billing.usage_report",
                   f"tenant:{tenant_id}", tenant_id=tenant_id,
                   details={"report_id": report.report_id, "ingested_bytes": report.ingested_bytes})
    return UsageReceipt(report_id=report.report_id, recorded=recorded)


@router.post("/v1/billing/usage-reports",
             summary="A tenant server's report of ingested bytes, signed with the tenant server's credential",
             responses=problems({
                 401: "`/problems/usage-report-unauthorized`: unknown key id, or a signature that does not verify",
                 422: "`/problems/invalid-usage-report`: not a usage report, or `at` not within the last 35 days",
                 503: "`/problems/secrets-unavailable`: the credential's secret cannot be read now",
             }))
async def usage_report(
    request: Request,
    services: ServicesDep,
    key_id: Annotated[str | None, Header(alias=server_credential.KEY_HEADER)] = None,
    signature: Annotated[str | None, Header(alias=server_credential.SIGNATURE_HEADER)] = None,
    legacy_key_id: Annotated[str | None, Header(alias=server_credential.LEGACY_KEY_HEADER)] = None,
) -> UsageReceipt:
    key_id = key_id or legacy_key_id
    body = await request.body()
    source_ip = request.client.host if request.client else None
    try:
        receipt = await run_in_threadpool(_record, services, key_id, signature, body, source_ip)
    except usage_reports.InvalidReport as exc:
        kind = "invalid-usage-report" if exc.status == 422 else "usage-report-unauthorized"
        raise Problem(exc.status, kind, str(exc)) from None
    mark_audited(request)
    return receipt
