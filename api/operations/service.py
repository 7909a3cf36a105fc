"""Creating operations: idempotency keys, request fingerprints, one at a time per tenant."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import UNFINISHED_OPERATION_STATUSES, Operation, OperationKind, OperationStatus
from api.jobs.enqueue import enqueue_operation
from api.operations.plans import initial_steps
from api.problems import Problem

UNFINISHED = UNFINISHED_OPERATION_STATUSES


def find_by_key(session: Session, key: str) -> Operation | None:
    return session.scalar(select(Operation).where(Operation.idempotency_key == key))


def replay_or_conflict(existing: Operation, request_fingerprint: str) -> Operation:
    """Same key + same request: the original operation. Same key + another request: 422."""
    check_same_request(existing.request_fingerprint, request_fingerprint)
    return existing


def check_same_request(stored_fingerprint: str, request_fingerprint: str) -> None:
    """An Idempotency-Key may only be reused for the same request body (422 otherwise)."""
    if not hmac.compare_digest(stored_fingerprint, request_fingerprint):
        raise Problem(
            422,
            "idempotency-key-reused",
            "This Idempotency-Key was already used with a different request body; use a new key.",
        )


def unfinished_operation(session: Session, tenant_id: uuid.UUID) -> Operation | None:
    query = select(Operation).where(Operation.tenant_id == tenant_id, Operation.status.in_(UNFINISHED))
    return session.scalars(query).first()


def operation_in_progress(existing: Operation) -> Problem:
    return Problem(
        409,
        "operation-in-progress",
        f"Operation {existing.id} ({existing.kind}) is still {existing.status} for this tenant; wait for it to finish.",
        operation_url=f"/v1/operations/{existing.id}",
    )


def resume_operation(session: Session, operation: Operation, *, queue: str) -> None:
    """Put a waiting (or failed, for a retry) operation back in the queue, in the caller's transaction."""
    operation.status = OperationStatus.PENDING.value
    enqueue_operation(session, operation.id, operation.tenant_id, queue=queue)


def start_operation(
    session: Session,
    *,
    kind: OperationKind,
    tenant_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    requested_by: str,
    params: dict[str, Any] | None = None,
    moves_placement: bool = False,
    queue: str,
) -> Operation:
    """Record the operation and enqueue its job in the caller's transaction."""
    existing = unfinished_operation(session, tenant_id)
    if existing is not None:
        raise operation_in_progress(existing)
    operation = Operation(
        kind=kind.value,
        tenant_id=tenant_id,
        idempotency_key=key,
        request_fingerprint=request_fingerprint,
        status=OperationStatus.PENDING.value,
        steps=initial_steps(kind, moves_placement=moves_placement),
        params=params or {},
        requested_by=requested_by,
    )
    session.add(operation)
    session.flush()
    enqueue_operation(session, operation.id, tenant_id, queue=queue)
    return operation
