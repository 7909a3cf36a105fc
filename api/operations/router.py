"""Operation progress and control."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth.dependencies import TenantContext, require_operation
from api.auth.roles import OPERATORS, READERS, TenantRole
from api.db.models import Operation, StackEvent
from api.problems import problems
from api.tenants.lifecycle import cancel_operation, confirm_operation, retry_operation
from api.tenants.schemas import OperationRef

router = APIRouter(prefix="/v1/operations", tags=["operations"])

BIGINT_MAX = 2**63 - 1  # event ids are PostgreSQL bigints


class StackEventOut(BaseModel):
    id: int
    step: str
    type: str
    payload: dict[str, Any]
    at: datetime


class OperationOut(BaseModel):
    id: uuid.UUID
    kind: str
    tenant_id: uuid.UUID
    status: str
    current_step: str | None
    steps: list[dict[str, Any]]
    params: dict[str, Any]
    error: str | None
    requested_by: str
    created_at: datetime
    finished_at: datetime | None
    events: list[StackEventOut]


def _events(ctx: TenantContext, operation_id: uuid.UUID, after: int, limit: int) -> list[StackEventOut]:
    query = (
        select(StackEvent)
        .where(StackEvent.operation_id == operation_id, StackEvent.id > after)
        .order_by(StackEvent.id)
        .limit(limit)
    )
    return [StackEventOut(id=e.id, step=e.step, type=e.event_type, payload=e.payload, at=e.created_at) for e in ctx.db.scalars(query)]


@router.get("/{operation_id}", summary="Steps, attempts, errors and engine progress of an operation")
def get_operation(
    operation_id: uuid.UUID,
    ctx: Annotated[TenantContext, require_operation(TenantRole.VIEWER, platform=READERS)],
    events_after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="Only engine events with a larger id")] = 0,
    events_limit: Annotated[int, Query(ge=0, le=1000)] = 200,
) -> OperationOut:
    with ctx.db.begin():
        op = ctx.db.get(Operation, operation_id)
        return OperationOut(
            id=op.id, kind=op.kind, tenant_id=op.tenant_id, status=op.status, current_step=op.current_step,
            steps=op.steps, params=op.params, error=op.error, requested_by=op.requested_by,
            created_at=op.created_at, finished_at=op.finished_at,
            events=_events(ctx, operation_id, events_after, events_limit),
        )


@router.post("/{operation_id}/confirm", status_code=202, summary="Apply a previewed placement change",
             responses=problems({409: "`/problems/not-awaiting-confirmation`: the operation awaits no confirmation"}))
def confirm(operation_id: uuid.UUID, ctx: Annotated[TenantContext, require_operation(TenantRole.OWNER)]) -> OperationRef:
    return OperationRef.of(confirm_operation(ctx, operation_id))


class CancelRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Why: recorded in the operation's error and the audit log")


@router.post(
    "/{operation_id}/cancel",
    summary="Cancel an operation waiting for confirmation or capacity (idempotent: a cancelled one answers the same)",
    responses=problems({409: "`/problems/not-cancellable`: only an operation AWAITING_CONFIRMATION or "
                                  "AWAITING_CAPACITY can be cancelled"}),
)
def cancel(
    operation_id: uuid.UUID, body: CancelRequest, ctx: Annotated[TenantContext, require_operation(TenantRole.OWNER)]
) -> OperationRef:
    return OperationRef.of(cancel_operation(ctx, operation_id, body.reason))


@router.post("/{operation_id}/retry", status_code=202, summary="Operator: run a FAILED operation again from the failed step",
             responses=problems({409: "`/problems/not-failed`: only a FAILED operation can be retried"}))
def retry(operation_id: uuid.UUID, ctx: Annotated[TenantContext, require_operation(None, platform=OPERATORS)]) -> OperationRef:
    return OperationRef.of(retry_operation(ctx, operation_id))
