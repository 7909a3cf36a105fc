"""Audit log reading and chain verification for auditors and operators."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from api.audit.checkpoint import verify_platform_chain
from api.auth.dependencies import RequestContext, require_platform
from api.auth.roles import READERS
from api.db.models import AuditRecord

router = APIRouter(prefix="/v1/platform/audit", tags=["audit"])


class AuditRecordOut(BaseModel):
    id: int
    occurred_at: datetime
    actor: str
    tenant_id: uuid.UUID | None
    action: str
    resource: str
    source_ip: str | None
    result: str
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, record: AuditRecord) -> AuditRecordOut:
        return cls.model_validate(record, from_attributes=True)


class ChainVerdictOut(BaseModel):
    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str | None
    checkpoints: int


@router.get("", summary="Audit records, newest first")
def list_records(
    ctx: Annotated[RequestContext, require_platform(*READERS)],
    tenant_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRecordOut]:
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(AuditRecord.tenant_id == tenant_id)
    with ctx.db.begin():
        return [AuditRecordOut.of(r) for r in ctx.db.scalars(query)]


@router.get("/verify", summary="Recompute the hash chain and check it against its signed checkpoints; "
                               "reports the first edited, missing or rewritten row, or a truncation")
def verify(ctx: Annotated[RequestContext, require_platform(*READERS)]) -> ChainVerdictOut:
    with ctx.db.begin():
        return ChainVerdictOut(**verify_platform_chain(ctx.db, ctx.services).as_dict())
