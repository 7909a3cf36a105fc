"""The drift watcher's findings for operators and auditors; an operator's correction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth.dependencies import RequestContext, TenantContext, require, require_platform
from api.auth.roles import OPERATORS, READERS
from api.db.models import DriftFinding
from api.drift.correction import MAX_REASON, request_correction
from api.problems import problems
from api.tenants.router import OptionalIdempotencyKey
from api.tenants.schemas import AcceptedOperation, OperationRef, TenantOut

router = APIRouter(prefix="/v1/platform/drift", tags=["drift"])


class DriftFindingOut(BaseModel):
    id: int
    stack: str
    tenant_id: uuid.UUID | None
    findings: list[dict[str, Any]]
    detected_at: datetime
    updated_at: datetime
    cleared_at: datetime | None
    correction_operation_id: uuid.UUID | None

    @classmethod
    def of(cls, row: DriftFinding) -> DriftFindingOut:
        return cls.model_validate(row, from_attributes=True)


@router.get("", summary="Drift the watcher found: open findings, or all of them, newest first")
def list_findings(
    ctx: Annotated[RequestContext, require_platform(*READERS)],
    include_cleared: bool = False,
    tenant_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DriftFindingOut]:
    query = select(DriftFinding).order_by(DriftFinding.id.desc()).limit(limit)
    if not include_cleared:
        query = query.where(DriftFinding.cleared_at.is_(None))
    if tenant_id is not None:
        query = query.where(DriftFinding.tenant_id == tenant_id)
    with ctx.db.begin():
        return [DriftFindingOut.of(row) for row in ctx.db.scalars(query)]


class CorrectionRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=r"\S",
                        description="Why the drift is corrected; kept on the operation and in the audit record")


@router.post("/tenants/{tenant_id}/correction", status_code=202,
             summary="Operator: put the tenant's stack back over its cluster's drift (a drift_correction operation)",
             responses=problems({409: "`/problems/invalid-state`: the tenant is not ACTIVE; "
                                      "`/problems/operation-in-progress`: another of its operations is unfinished"}))
def correct(
    body: CorrectionRequest,
    response: Response,
    ctx: Annotated[TenantContext, require(None, platform=OPERATORS)],
    idempotency_key: OptionalIdempotencyKey = None,
) -> AcceptedOperation:
    tenant, operation = request_correction(ctx, body.reason, idempotency_key)
    ref = OperationRef.of(operation)
    response.headers["Location"] = ref.url
    return AcceptedOperation(tenant=TenantOut.of(tenant), operation=ref)
