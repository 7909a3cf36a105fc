"""The drift job: check many stacks against their clusters, optionally put them back.

First the pre-check (precheck.py) compares every stack's checkpoint with the live objects
without starting the engine; a stack it proves clean is done. Each other stack gets the
engine's drift check (`refresh --preview-only`, applies nothing), which reports per
property; with `fix`, a drifted stack gets a correction (an update with refresh, recorded
with the reason "drift correction") and a second check that proves the drift is gone.
`full=True` skips the pre-check: the engine checks every stack.

Outcome per stack: `clean`, `drifted` (found and not fixed: no `fix`, or the correction
did not remove it), `fixed`, or `error`. The run's exit code, for CI:
0 = nothing drifted (or everything was fixed), 2 = drift remains, 1 = some stack failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import OperationError, classify
from .events import OnEvent
from .history import UpdateMetadata
from .operations import DRIFT_CORRECTION_REASON, DriftReport, OperationResult, StackOperations
from .precheck import UNVERIFIED, Finding, PrecheckRun, StackVerdict

SCHEMA = "cameleer.drift/v1"
CLEAN, DRIFTED, FIXED, ERROR = "clean", "drifted", "fixed", "error"
BY_PRECHECK, BY_ENGINE = "precheck", "engine"
EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2


@dataclass
class StackDriftOutcome:
    stack: str
    status: str = CLEAN
    drift: DriftReport | None = None
    correction: OperationResult | None = None
    verification: DriftReport | None = None
    error: OperationError | None = None
    checked_by: str = BY_ENGINE
    engine_reason: str | None = None  # why the engine checked it: what the pre-check found
    precheck: StackVerdict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "status": self.status,
            "checked_by": self.checked_by,
            "engine_reason": self.engine_reason,
            "precheck": self.precheck.to_dict() if self.precheck else None,
            "drift": self.drift.to_dict() if self.drift else None,
            "correction": self.correction.to_dict() if self.correction else None,
            "verification": self.verification.to_dict() if self.verification else None,
            "error": self.error.to_dict() if self.error else None,
        }


@dataclass
class DriftRun:
    fix: bool
    started_at: datetime
    finished_at: datetime | None = None
    outcomes: list[StackDriftOutcome] = field(default_factory=list)
    precheck: PrecheckRun | None = None  # None: a full engine scan

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def exit_code(self) -> int:
        if self.count(ERROR):
            return EXIT_ERROR
        if self.count(DRIFTED):
            return EXIT_DRIFT
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "fix": self.fix,
            "mode": "full" if self.precheck is None else "precheck",
            "exit_code": self.exit_code,
            "summary": {
                "stacks": len(self.outcomes),
                CLEAN: self.count(CLEAN),
                DRIFTED: self.count(DRIFTED),
                FIXED: self.count(FIXED),
                ERROR: self.count(ERROR),
                "engine_checked": sum(1 for o in self.outcomes if o.checked_by == BY_ENGINE),
            },
            "precheck": self.precheck.to_dict() if self.precheck else None,
            "stacks": [o.to_dict() for o in self.outcomes],
        }


def check_stack(
    ops: StackOperations,
    stack: str,
    *,
    fix: bool,
    metadata: UpdateMetadata | None = None,
    on_event: OnEvent | None = None,
) -> StackDriftOutcome:
    outcome = StackDriftOutcome(stack)
    try:
        outcome.drift = ops.check_drift(stack, on_event=on_event)
        if not outcome.drift.drifted:
            outcome.status = CLEAN
            return outcome
        outcome.status = DRIFTED
        if not fix:
            return outcome
        outcome.correction = ops.correct_drift(stack, metadata, on_event=on_event)
        outcome.verification = ops.check_drift(stack, on_event=on_event)
        outcome.status = DRIFTED if outcome.verification.drifted else FIXED
    except Exception as exc:  # noqa: BLE001 - reported per stack; the job goes on
        outcome.error = classify(exc, stack=stack, operation="drift")
        outcome.status = ERROR
    return outcome


def run_drift(
    ops: StackOperations,
    stacks: Sequence[str],
    *,
    fix: bool = False,
    parallel: int = 1,
    metadata: UpdateMetadata | None = None,
    on_event: OnEvent | None = None,
    on_stack_done: Callable[[StackDriftOutcome], None] | None = None,
    full: bool = False,
) -> DriftRun:
    """Check (and with `fix`, correct) `stacks`, `parallel` at a time; results in input order.

    Without `full`, the engine sees only the stacks the pre-check could not prove clean."""
    if fix and metadata is None:
        metadata = UpdateMetadata(ops.settings.actor, DRIFT_CORRECTION_REASON, kind="drift-correction")
    run = DriftRun(fix=fix, started_at=datetime.now(timezone.utc))
    if not full:
        run.precheck = _precheck(ops, list(stacks))

    def one(stack: str) -> StackDriftOutcome:
        verdict = run.precheck.verdicts.get(stack) if run.precheck else None
        if verdict is not None and verdict.clean:
            outcome = StackDriftOutcome(stack, CLEAN, checked_by=BY_PRECHECK, precheck=verdict)
        else:
            outcome = check_stack(ops, stack, fix=fix, metadata=metadata, on_event=on_event)
            outcome.precheck = verdict
            if run.precheck is not None:
                outcome.engine_reason = verdict.reason if verdict else "no checkpoint to pre-check"
        if on_stack_done is not None:
            on_stack_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="drift") as pool:
        run.outcomes = list(pool.map(one, stacks))
    run.finished_at = datetime.now(timezone.utc)
    return run


def _precheck(ops: StackOperations, stacks: list[str]) -> PrecheckRun:
    """The pre-check's verdicts; if it cannot run at all, every stack goes to the engine."""
    try:
        return ops.precheck(stacks)
    except Exception as exc:  # noqa: BLE001 - the engine scan is the fallback, never a skipped check
        finding = Finding("", UNVERIFIED, detail=f"the pre-check failed: {type(exc).__name__}: {str(exc)[:300]}")
        return PrecheckRun({stack: StackVerdict(stack, (finding,), 0) for stack in stacks})


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None
