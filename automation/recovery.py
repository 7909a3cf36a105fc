"""Bringing a stack back after an engine process died in the middle of an operation.

What a killed `pulumi up` leaves behind, and what is done about it:

1. the backend lock of the dead process: removed with `pulumi cancel`, but only when
   every lock on the stack is provably stale (`locks.assess`); a live lock is a conflict;
2. pending operations in the checkpoint (resources the engine had started to create,
   update or delete): listed, then cleared by exporting the state and importing it
   back (`pulumi stack import` drops pending operations and says so);
3. a refresh, so that the state agrees with the cluster again before the next update.

Every step is reported in a `RecoveryReport` and as `recovery` events; nothing is
cleaned silently. Pending *creates* deserve a person's eye: the resource may exist in the
cluster without being in the state; the report names each one.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pulumi.automation import Deployment, Stack

from . import engine
from .errors import ErrorKind, OperationError
from .events import EventCapture
from .locks import BackendLocks, LockAssessment, Verdict, assess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingOperation:
    type: str  # creating | updating | deleting | reading | importing
    urn: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "urn": self.urn}


@dataclass
class RecoveryReport:
    stack: str
    locks: list[LockAssessment] = field(default_factory=list)
    locks_removed: bool = False
    pending_operations: list[PendingOperation] = field(default_factory=list)
    pending_cleared: bool = False
    refreshed: bool = False
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def acted(self) -> bool:
        return self.locks_removed or self.pending_cleared or self.refreshed

    def summary(self) -> str:
        parts = []
        if self.locks_removed:
            parts.append("removed stale lock(s) of " + ", ".join(a.lock.owner for a in self.locks))
        if self.pending_cleared:
            parts.append(
                f"cleared {len(self.pending_operations)} pending operation(s): "
                + ", ".join(f"{p.type} {p.urn.rsplit('::', 1)[-1]}" for p in self.pending_operations)
            )
        if self.refreshed:
            parts.append("refreshed the state from the cluster")
        return "; ".join(parts) or "nothing to recover"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "at": self.at.isoformat(),
            "locks": [a.to_dict() for a in self.locks],
            "locks_removed": self.locks_removed,
            "pending_operations": [p.to_dict() for p in self.pending_operations],
            "pending_cleared": self.pending_cleared,
            "refreshed": self.refreshed,
            "summary": self.summary(),
        }


def pending_operations(deployment: Deployment | dict[str, Any]) -> list[PendingOperation]:
    """The pending operations recorded in an exported state."""
    body = deployment.deployment if isinstance(deployment, Deployment) else deployment.get("deployment", deployment)
    ops = (body or {}).get("pending_operations") or []
    return [
        PendingOperation(type=str(op.get("type", "?")), urn=str((op.get("resource") or {}).get("urn", "?")))
        for op in ops
    ]


def assess_locks(lock_store: BackendLocks, stack: str, *, stale_after_seconds: float,
                 hostname: str | None = None, leased: bool = False) -> list[LockAssessment]:
    return [
        assess(lock, stale_after_seconds=stale_after_seconds, hostname=hostname or socket.gethostname(),
               leased=leased)
        for lock in lock_store.list(stack)
    ]


def recover(
    stack: Stack,
    capture: EventCapture,
    *,
    lock_store: BackendLocks | None,
    stale_after_seconds: float,
    refresh_message: str | None = None,
    always_check_state: bool = False,
    config_file: str | None = None,
    leased: bool = False,
) -> RecoveryReport:
    """Remove stale locks and pending operations of `stack`; raise CONFLICT on a live lock.

    `always_check_state` exports the state even when no stale lock was found (an explicit
    `cameleer recover`); otherwise the state is only examined after a stale lock, since a
    dead process is the only way pending operations outlive their update. `leased`: the
    caller holds the stack's lease, which judges locks held from other hosts (locks.assess).
    """
    report = RecoveryReport(stack=stack.name)
    if lock_store is not None:
        report.locks = assess_locks(lock_store, stack.name, stale_after_seconds=stale_after_seconds,
                                    leased=leased)
    live = [a for a in report.locks if a.verdict is Verdict.LIVE]
    if live:
        raise OperationError(
            ErrorKind.CONFLICT,
            "stack is locked by a running operation: "
            + "; ".join(f"{a.lock.owner} since {a.lock.timestamp} ({a.reason})" for a in live),
            stack=stack.name, operation=capture.operation, retry_after=30.0,
        )
    if lock_store is not None and (report.locks or always_check_state):
        for path in lock_store.remove_torn_writes(stack.name):
            capture.emit("recovery", f"removed a half-written backend file {path}", severity="warning")
    if report.locks:
        for assessment in report.locks:
            capture.emit("recovery", f"stale lock of {assessment.lock.owner}: {assessment.reason}",
                         severity="warning", data=assessment.to_dict())
        stack.cancel()
        report.locks_removed = True
        log.warning("%s: removed %d stale lock(s)", stack.name, len(report.locks))

    if report.locks_removed or always_check_state:
        deployment = stack.export_stack()
        report.pending_operations = pending_operations(deployment)
        if report.pending_operations:
            for op in report.pending_operations:
                capture.emit("recovery", f"pending {op.type} of {op.urn} left by an interrupted operation",
                             severity="warning", data=op.to_dict())
            body = dict(deployment.deployment or {})
            body["pending_operations"] = []
            stack.import_stack(Deployment(version=deployment.version, deployment=body))
            report.pending_cleared = True
            engine.refresh(stack, message=refresh_message or "recovery", on_event=capture,
                           config_file=config_file)
            report.refreshed = True
    if report.acted:
        capture.emit("recovery", report.summary(), severity="warning", data=report.to_dict())
    return report
