"""Engine events, captured as plain data and handed to whoever is listening.

The Automation API streams the engine's events (a gRPC stream from the CLI process) as
`pulumi.automation.EngineEvent` objects. `EventCapture` is the `on_event` callback given
to the SDK: it keeps the raw events (the diff builder needs them), turns each into an
`OperationEvent` (a small, JSON-ready record with a UTC timestamp) and passes that to the
caller's own callback, so the service can store progress and the CLI can draw it.

A failing listener never breaks the engine's event stream: its exception is logged and
the operation goes on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pulumi.automation import EngineEvent

log = logging.getLogger(__name__)

MANDATORY = "mandatory"
_COLOR_DIRECTIVE = re.compile(r"<\{%[^%]*%\}>")


@dataclass(frozen=True)
class PolicyViolation:
    """One CrossGuard finding: which rule, how binding, on which resource, and why."""

    policy_pack: str
    policy_pack_version: str
    policy: str
    enforcement_level: str  # advisory | mandatory | remediate | disabled
    message: str
    urn: str | None = None

    @property
    def mandatory(self) -> bool:
        return self.enforcement_level == MANDATORY

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_pack": self.policy_pack,
            "policy_pack_version": self.policy_pack_version,
            "policy": self.policy,
            "enforcement_level": self.enforcement_level,
            "message": self.message,
            "urn": self.urn,
        }


@dataclass(frozen=True)
class OperationEvent:
    """One thing that happened during an engine operation, ready to be stored as JSON.

    `type` is one of: prelude, resource-pre, resource-outputs, resource-failed, diagnostic,
    policy, summary, cancel, stdout (the engine's), and the automation layer's own:
    started, retry, recovery, finished.
    """

    stack: str
    operation: str
    type: str
    sequence: int
    timestamp: datetime
    urn: str | None = None
    resource_type: str | None = None
    op: str | None = None
    severity: str | None = None
    message: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "operation": self.operation,
            "type": self.type,
            "sequence": self.sequence,
            "timestamp": self.timestamp.isoformat(timespec="milliseconds"),
            "urn": self.urn,
            "resource_type": self.resource_type,
            "op": self.op,
            "severity": self.severity,
            "message": self.message,
            "data": dict(self.data),
        }


OnEvent = Callable[[OperationEvent], None]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def convert(stack: str, operation: str, event: EngineEvent, received_at: float) -> OperationEvent | None:
    """One SDK engine event as an `OperationEvent` (None for events nobody needs)."""
    base = dict(stack=stack, operation=operation, sequence=event.sequence,
                timestamp=_utc(received_at))
    if event.resource_pre_event is not None:
        meta = event.resource_pre_event.metadata
        return OperationEvent(type="resource-pre", urn=meta.urn, resource_type=meta.type,
                              op=_op(meta.op), data=_step_data(meta), **base)
    if event.res_outputs_event is not None:
        meta = event.res_outputs_event.metadata
        return OperationEvent(type="resource-outputs", urn=meta.urn, resource_type=meta.type,
                              op=_op(meta.op), data=_step_data(meta), **base)
    if event.res_op_failed_event is not None:
        failed = event.res_op_failed_event
        meta = failed.metadata
        return OperationEvent(type="resource-failed", urn=meta.urn, resource_type=meta.type,
                              op=_op(meta.op), severity="error",
                              data={"status": failed.status, "steps": failed.steps}, **base)
    if event.diagnostic_event is not None:
        diag = event.diagnostic_event
        if diag.ephemeral or diag.severity == "debug":
            return None  # the engine's RPC tracing: noise for anyone listening
        return OperationEvent(type="diagnostic", urn=diag.urn or None, severity=diag.severity,
                              message=_clean(diag.message), **base)
    if event.policy_event is not None:
        violation = policy_violation(event)
        assert violation is not None
        return OperationEvent(type="policy", urn=violation.urn, severity=violation.enforcement_level,
                              message=violation.message, data=violation.to_dict(), **base)
    if event.summary_event is not None:
        summary = event.summary_event
        return OperationEvent(
            type="summary",
            data={
                "resource_changes": {_op(k): v for k, v in (summary.resource_changes or {}).items()},
                "duration_seconds": summary.duration_seconds,
                "maybe_corrupt": summary.maybe_corrupt,
                "policy_packs": dict(summary.policy_packs or {}),
            },
            **base,
        )
    if event.prelude_event is not None:
        return OperationEvent(type="prelude", **base)
    if event.cancel_event is not None:
        return OperationEvent(type="cancel", **base)
    return None


def policy_violation(event: EngineEvent) -> PolicyViolation | None:
    p = event.policy_event
    if p is None:
        return None
    return PolicyViolation(
        policy_pack=p.policy_pack_name,
        policy_pack_version=p.policy_pack_version,
        policy=p.policy_name,
        enforcement_level=p.enforcement_level,
        message=_clean(p.message),
        urn=p.resource_urn or None,
    )


class EventCapture:
    """The SDK's `on_event` callback for one operation on one stack.

    Keeps what the operation's result needs (raw events for diffs, policy violations,
    error diagnostics, the summary) and forwards `OperationEvent`s to `listener`.
    """

    def __init__(self, stack: str, operation: str, listener: OnEvent | None = None) -> None:
        self.stack = stack
        self.operation = operation
        self.listener = listener
        self.engine_events: list[EngineEvent] = []
        self.events: list[OperationEvent] = []
        self.policy_violations: list[PolicyViolation] = []
        self.error_diagnostics: list[str] = []
        self.summary: OperationEvent | None = None
        self._lock = threading.Lock()
        self._own_sequence = 0

    # The SDK calls this from its gRPC server thread.
    def __call__(self, event: EngineEvent) -> None:
        received_at = time.time()
        with self._lock:
            self.engine_events.append(event)
            violation = policy_violation(event)
            if violation is not None:
                self.policy_violations.append(violation)
            record = convert(self.stack, self.operation, event, received_at)
            if record is None:
                return
            if record.type == "diagnostic" and record.severity == "error" and record.message:
                self.error_diagnostics.append(record.message)
            if record.type == "summary":
                self.summary = record
            self.events.append(record)
        self._deliver(record)

    def emit(self, type: str, message: str | None = None, *, severity: str | None = "info",
             data: Mapping[str, Any] | None = None) -> OperationEvent:
        """Record an event of the automation layer's own (started, retry, recovery, finished)."""
        with self._lock:
            self._own_sequence += 1
            record = OperationEvent(
                stack=self.stack, operation=self.operation, type=type,
                # Negative sequences never collide with the engine's (which start at 0 per run).
                sequence=-self._own_sequence, timestamp=_utc(time.time()),
                severity=severity, message=message, data=dict(data or {}),
            )
            self.events.append(record)
        self._deliver(record)
        return record

    def reset_engine_run(self) -> None:
        """Forget per-run state before a retry (events already delivered stay delivered)."""
        with self._lock:
            self.engine_events.clear()
            self.policy_violations.clear()
            self.error_diagnostics.clear()
            self.summary = None

    @property
    def resource_changes(self) -> dict[str, int]:
        if self.summary is None:
            return {}
        return dict(self.summary.data.get("resource_changes", {}))

    def _deliver(self, record: OperationEvent) -> None:
        if self.listener is None:
            return
        try:
            self.listener(record)
        except Exception:  # noqa: BLE001 - a listener must not break the engine's stream
            log.exception("on_event listener failed for %s event of %s %s",
                          record.type, record.operation, record.stack)


def _op(op: Any) -> str:
    return getattr(op, "value", op) if op is not None else ""


def _step_data(meta: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if meta.diffs:
        data["diffs"] = list(meta.diffs)
    if meta.detailed_diff:
        data["detailed_diff"] = {k: v.diff_kind.value for k, v in meta.detailed_diff.items()}
    return data


def _clean(message: str | None) -> str:
    """Strip the engine's color directives (`<{%reset%}>`) and surrounding blank space."""
    if not message:
        return ""
    return _COLOR_DIRECTIVE.sub("", message).strip()
