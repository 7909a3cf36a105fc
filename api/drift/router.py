"""The drift watcher's findings for operators and auditors."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from api.auth.dependencies import RequestContext, require_platform
from api.auth.roles import READERS
from api.db.models import DriftFinding
from api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/platform/drift", tags=["drift"], responses=PROBLEM_RESPONSES)


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
