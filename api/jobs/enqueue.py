"""Enqueue a job inside the caller's SQLAlchemy transaction.

The job row is committed together with the operation row, or not at all: no
operation without its job, no job for an operation that was rolled back. This calls
procrastinate's own defer function (schema pinned with the procrastinate version in
migration 0003), the same SQL that ``task.defer()`` runs.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

RUN_OPERATION_TASK = "run_operation"

_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW("
    ":queue, :task, 0, :lock, :queueing_lock, CAST(:args AS jsonb), NULL"
    ")::procrastinate_job_to_defer_v1]))"
)


def tenant_lock(tenant_id: uuid.UUID) -> str:
    return f"tenant:{tenant_id}"


class AlreadyQueued(Exception):
    """A job with the same queueing lock is waiting already."""


def enqueue_task(session: Session, task: str, args: dict, *, queue: str, lock: str) -> int:
    """A job of ``task``, at most one waiting per ``lock`` (:class:`AlreadyQueued` otherwise)."""
    try:
        with session.begin_nested():
            return session.execute(_DEFER, {"queue": queue, "task": task, "lock": lock, "queueing_lock": lock,
                                            "args": json.dumps(args)}).scalar_one()
    except IntegrityError as exc:
        if "queueing_lock" in str(exc.orig):
            raise AlreadyQueued(lock) from None
        raise


def enqueue_operation(session: Session, operation_id: uuid.UUID, tenant_id: uuid.UUID, *, queue: str) -> int:
    """One job per operation; at most one queued and one running per tenant (lock = tenant)."""
    lock = tenant_lock(tenant_id)
    return session.execute(
        _DEFER,
        {
            "queue": queue,
            "task": RUN_OPERATION_TASK,
            "lock": lock,
            "queueing_lock": lock,
            "args": json.dumps({"operation_id": str(operation_id)}),
        },
    ).scalar_one()
