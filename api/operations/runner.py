"""Runs an operation's steps in order, recording each attempt in the operation row.

The runner is restartable at any point: completed steps are skipped, and the step that
was interrupted runs again (steps are idempotent). Exceptions propagate to the job
queue, which retries with backoff; on the final attempt (or a permanent error) the
operation ends FAILED with the reason, ``OperationFailed`` tells the queue not to retry,
and an operator can retry the operation later.

Only a failed signup makes its tenant FAILED: the tenant has never run. Any other
operation leaves the tenant as its steps left it, the failure recorded on the operation
(and in the audit log). Suspend, reactivate and tier changes set the status only in their
last step, so the tenant keeps the status it had before; a drift correction never sets
it; a delete sets DELETING first and, half done, keeps it until an operator retries it
to the end (a half-deleted tenant is neither corrected nor changed).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from components.catalog import CatalogError

from api.audit.chain import AuditMeta, append
from api.billing.stripe_api import BillingNotConfigured, BillingRefused
from api.billing.sync import CatalogNotSynced
from api.db.models import Operation, OperationKind, OperationStatus, Tenant, TenantStatus
from api.db.session import Scope, ScopedSession
from api.metrics import OPERATION_STEPS, OPERATIONS_FINISHED, PROVISIONING_DURATION
from api.operations.plans import now_iso
from api.operations.steps import STEPS, OperationWaits, PermanentStepError, StepContext
from api.services import Services
from api.stacks.driver import StackChangeRefused, StackUnavailable

log = logging.getLogger(__name__)
PERMANENT_ERRORS = (
    PermanentStepError, StackUnavailable, StackChangeRefused, CatalogError,
    BillingRefused, BillingNotConfigured, CatalogNotSynced,
)
MAX_ERROR_LENGTH = 2000


class OperationFailed(Exception):
    """The operation has been recorded as FAILED; retrying the job cannot help."""


@dataclass(frozen=True)
class _Loaded:
    tenant_id: uuid.UUID
    kind: OperationKind
    status: OperationStatus
    params: dict[str, Any]
    steps: list[dict[str, Any]]
    requested_by: str


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


class OperationRunner:
    def __init__(self, services: Services) -> None:
        self.services = services

    def run(self, operation_id: uuid.UUID, *, final_attempt: bool) -> OperationStatus:
        loaded = self._load(operation_id)
        if loaded is None:
            log.warning("operation %s does not exist; nothing to run", operation_id)
            return OperationStatus.FAILED
        if loaded.status.finished:
            return loaded.status
        meta = AuditMeta(actor=loaded.requested_by, request_id=f"operation:{operation_id}")
        self._update(operation_id, loaded.tenant_id, status=OperationStatus.RUNNING)
        for index, record in enumerate(loaded.steps):
            if record["status"] == "succeeded":
                continue
            outcome = self._run_step(operation_id, loaded, index, meta, final_attempt)
            if outcome is not None:
                return outcome
        return self._finish(operation_id, loaded, meta, OperationStatus.SUCCEEDED)

    # -- one step ---------------------------------------------------------------------

    def _run_step(
        self, operation_id: uuid.UUID, loaded: _Loaded, index: int, meta: AuditMeta, final_attempt: bool
    ) -> OperationStatus | None:
        name = loaded.steps[index]["name"]
        self._mark_step(operation_id, loaded.tenant_id, index, status="running", attempt=True)
        ctx = StepContext(self.services, operation_id, loaded.tenant_id, loaded.kind, loaded.params, name)
        try:
            result = STEPS[name](ctx)
        except OperationWaits as exc:
            self._mark_step(operation_id, loaded.tenant_id, index, status="waiting", note=str(exc))
            self._update(operation_id, loaded.tenant_id, status=exc.status)
            self._audit(loaded, meta, operation_id, f"{name}", "pending")
            return exc.status
        except Exception as exc:
            final = final_attempt or isinstance(exc, PERMANENT_ERRORS)
            self._step_failed(operation_id, loaded, index, meta, exc, final)
            if final:
                raise OperationFailed(f"operation {operation_id} failed in step {name}") from exc
            raise
        self._mark_step(operation_id, loaded.tenant_id, index, status="succeeded", result=result)
        OPERATION_STEPS.labels(loaded.kind.value, name, "success").inc()
        self._audit(loaded, meta, operation_id, name, "success")
        return None

    def _step_failed(
        self, operation_id: uuid.UUID, loaded: _Loaded, index: int, meta: AuditMeta, exc: Exception, final: bool
    ) -> None:
        name = loaded.steps[index]["name"]
        error = _error_text(exc)
        log.warning("operation %s step %s failed (final=%s): %s", operation_id, name, final, error)
        self._mark_step(operation_id, loaded.tenant_id, index, status="failed" if final else "retrying", error=error)
        OPERATION_STEPS.labels(loaded.kind.value, name, "failure").inc()
        self._audit(loaded, meta, operation_id, name, "failure", error=error, final=final)
        if final:
            self._finish(operation_id, loaded, meta, OperationStatus.FAILED, error=f"step {name}: {error}")

    # -- persistence --------------------------------------------------------------------

    def _tx(self, tenant_id: uuid.UUID):
        return self.services.db.transaction(Scope.tenant(tenant_id))

    def _load(self, operation_id: uuid.UUID) -> _Loaded | None:
        with self.services.db.transaction(Scope.system()) as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                return None
            return _Loaded(
                tenant_id=operation.tenant_id,
                kind=OperationKind(operation.kind),
                status=OperationStatus(operation.status),
                params=dict(operation.params),
                steps=[dict(s) for s in operation.steps],
                requested_by=operation.requested_by,
            )

    def _update(self, operation_id: uuid.UUID, tenant_id: uuid.UUID, **fields: Any) -> None:
        with self._tx(tenant_id) as session:
            operation = session.get(Operation, operation_id, with_for_update=True)
            for key, value in fields.items():
                setattr(operation, key, value.value if hasattr(value, "value") else value)

    def _mark_step(
        self,
        operation_id: uuid.UUID,
        tenant_id: uuid.UUID,
        index: int,
        *,
        status: str,
        attempt: bool = False,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        note: str | None = None,
    ) -> None:
        with self._tx(tenant_id) as session:
            operation = session.get(Operation, operation_id, with_for_update=True)
            steps = [dict(s) for s in operation.steps]
            record = steps[index]
            record["status"] = status
            if attempt:
                record["attempts"] += 1
                record["started_at"] = now_iso()
                operation.current_step = record["name"]
            if status in ("succeeded", "failed"):
                record["finished_at"] = now_iso()
            if result is not None:
                record["result"] = result
            if error is not None:
                record["errors"] = [*record["errors"], {"at": now_iso(), "attempt": record["attempts"], "message": error}]
            if note is not None:
                record["note"] = note
            operation.steps = steps

    def _finish(
        self, operation_id: uuid.UUID, loaded: _Loaded, meta: AuditMeta, status: OperationStatus, error: str | None = None
    ) -> OperationStatus:
        with self._tx(loaded.tenant_id) as session:
            operation = session.get(Operation, operation_id, with_for_update=True)
            operation.status = status.value
            operation.error = error
            operation.current_step = None if status is OperationStatus.SUCCEEDED else operation.current_step
            operation.finished_at = datetime.now(UTC)
            if error is not None and loaded.kind is OperationKind.SIGNUP:
                _fail_tenant(session, loaded.tenant_id, error)
            append(
                session, meta, f"operation.{loaded.kind.value}", f"operation:{operation_id}",
                tenant_id=loaded.tenant_id, result="success" if error is None else "failure",
                details={"status": status.value, **({"error": error} if error else {})},
            )
            elapsed = (operation.finished_at - operation.created_at).total_seconds()
        OPERATIONS_FINISHED.labels(loaded.kind.value, status.value).inc()
        PROVISIONING_DURATION.labels(loaded.kind.value, status.value).observe(elapsed)
        return status

    def _audit(self, loaded: _Loaded, meta: AuditMeta, operation_id: uuid.UUID, step: str, result: str, **details: Any) -> None:
        with self._tx(loaded.tenant_id) as session:
            append(
                session, meta, f"operation.{loaded.kind.value}.{step}", f"operation:{operation_id}",
                tenant_id=loaded.tenant_id, result=result, details=details,
            )


def _fail_tenant(session: ScopedSession, tenant_id: uuid.UUID, reason: str) -> None:
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None and tenant.status != TenantStatus.DELETED:
        tenant.status = TenantStatus.FAILED.value
        tenant.failure_reason = reason
