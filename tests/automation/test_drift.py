"""The drift job's outcomes and exit codes (0 clean/fixed, 2 drift left, 1 error)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from automation.changes import PropertyChange, ResourceChange
from automation.drift import CLEAN, DRIFTED, ERROR, FIXED, SCHEMA, DriftRun, StackDriftOutcome, run_drift
from automation.errors import ErrorKind, OperationError
from automation.operations import DriftReport, OperationResult
from automation.precheck import UNVERIFIED, Finding, PrecheckRun, StackVerdict

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
DRIFT = ResourceChange("urn:pulumi:s::cameleer::pulumi-python:dynamic:Resource::server",
                       "pulumi-python:dynamic:Resource", "update",
                       [PropertyChange("manifest.spec.replicas", "update", False, 1, 3)])


def report(stack, drifted):
    return DriftReport(stack, NOW, 0.5, [DRIFT] if drifted else [], 3)


class Engine:
    """Stands in for StackOperations: per stack, the drift it sees before and after a fix."""

    def __init__(self, before, after=None, fail=()):
        self.before, self.after, self.fail = before, after or {}, set(fail)
        self.fixed: list[tuple[str, str]] = []
        self.settings = type("S", (), {"actor": "ci"})()
        self._lock = threading.Lock()

    def precheck(self, stacks):
        # Every stack flagged: these tests are about the engine path (see test_precheck_*).
        finding = Finding("", UNVERIFIED, detail="engine path under test")
        return PrecheckRun({s: StackVerdict(s, (finding,), 0) for s in stacks})

    def check_drift(self, stack, on_event=None):
        if stack in self.fail:
            raise OperationError(ErrorKind.TRANSIENT, "connection refused", stack=stack)
        with self._lock:
            done = any(s == stack for s, _ in self.fixed)
        return report(stack, self.after.get(stack, False) if done else self.before.get(stack, False))

    def correct_drift(self, stack, metadata=None, on_event=None):
        with self._lock:
            self.fixed.append((stack, metadata.reason))
        return OperationResult(stack, "update", NOW, NOW, {"update": 1})


def test_detection_only_never_corrects_and_exits_2():
    engine = Engine({"tenant-a": True, "tenant-b": False})
    run = run_drift(engine, ["tenant-a", "tenant-b"], fix=False)
    assert [o.status for o in run.outcomes] == [DRIFTED, CLEAN]
    assert engine.fixed == []
    assert run.exit_code == 2


def test_fix_corrects_with_the_reason_and_verifies():
    engine = Engine({"tenant-a": True, "tenant-b": False})
    run = run_drift(engine, ["tenant-a", "tenant-b"], fix=True, parallel=2)
    assert [o.status for o in run.outcomes] == [FIXED, CLEAN]
    assert engine.fixed == [("tenant-a", "drift correction")]
    assert run.outcomes[0].verification is not None and not run.outcomes[0].verification.drifted
    assert run.exit_code == 0


def test_drift_that_survives_the_fix_still_exits_2():
    engine = Engine({"tenant-a": True}, after={"tenant-a": True})
    run = run_drift(engine, ["tenant-a"], fix=True)
    assert run.outcomes[0].status == DRIFTED and run.outcomes[0].correction is not None
    assert run.exit_code == 2


def test_an_error_on_one_stack_does_not_stop_the_others_and_exits_1():
    engine = Engine({"tenant-a": True, "tenant-c": False}, fail={"tenant-b"})
    run = run_drift(engine, ["tenant-a", "tenant-b", "tenant-c"], fix=False, parallel=3)
    assert [o.status for o in run.outcomes] == [DRIFTED, ERROR, CLEAN]
    assert run.outcomes[1].error.kind is ErrorKind.TRANSIENT
    assert run.exit_code == 1


def test_progress_callback_sees_every_stack():
    seen = []
    run_drift(Engine({}), ["tenant-a", "tenant-b"], on_stack_done=lambda o: seen.append(o.stack))
    assert sorted(seen) == ["tenant-a", "tenant-b"]


def test_report_document_has_the_documented_shape():
    run = run_drift(Engine({"tenant-a": True}), ["tenant-a"], fix=False)
    doc = run.to_dict()
    assert doc["schema"] == SCHEMA == "cameleer.drift/v1"
    assert set(doc) == {"schema", "started_at", "finished_at", "fix", "mode", "exit_code", "summary", "precheck",
                        "stacks"}
    assert doc["mode"] == "precheck" and doc["precheck"]["flagged"] == 1
    assert doc["summary"] == {"stacks": 1, "clean": 0, "drifted": 1, "fixed": 0, "error": 0, "engine_checked": 1}
    stack = doc["stacks"][0]
    assert set(stack) == {"stack", "status", "checked_by", "engine_reason", "precheck", "drift", "correction",
                          "verification", "error"}
    assert stack["checked_by"] == "engine" and stack["engine_reason"] == "engine path under test"
    assert stack["drift"]["resources"][0]["properties"][0] == {
        "path": "manifest.spec.replicas", "kind": "update", "replace": False, "old": 1, "new": 3}


@pytest.mark.parametrize(("statuses", "code"), [
    ([], 0), ([CLEAN, FIXED], 0), ([CLEAN, DRIFTED], 2), ([DRIFTED, ERROR], 1),
])
def test_exit_codes(statuses, code):
    run = DriftRun(fix=False, started_at=NOW, outcomes=[StackDriftOutcome(f"s{i}", s) for i, s in enumerate(statuses)])
    assert run.exit_code == code


class PrecheckedEngine(Engine):
    def __init__(self, before, clean_by_precheck, **kwargs):
        super().__init__(before, **kwargs)
        self.clean_by_precheck, self.checked = set(clean_by_precheck), []

    def precheck(self, stacks):
        flag = (Finding("server", "changed", ("spec.replicas",)),)
        return PrecheckRun({s: StackVerdict(s, () if s in self.clean_by_precheck else flag, 1) for s in stacks})

    def check_drift(self, stack, on_event=None):
        self.checked.append(stack)
        return super().check_drift(stack, on_event)


def test_precheck_clean_stacks_never_reach_the_engine_and_full_sends_every_stack():
    engine = PrecheckedEngine({"tenant-b": True}, clean_by_precheck={"tenant-a", "tenant-c"})
    run = run_drift(engine, ["tenant-a", "tenant-b", "tenant-c"], fix=True)
    assert engine.checked == ["tenant-b", "tenant-b"]  # its check, and the check after the fix
    assert [(o.stack, o.status, o.checked_by) for o in run.outcomes] == [
        ("tenant-a", CLEAN, "precheck"), ("tenant-b", FIXED, "engine"), ("tenant-c", CLEAN, "precheck")]
    assert run.outcomes[1].engine_reason == "server: changed spec.replicas"

    engine = PrecheckedEngine({}, clean_by_precheck={"tenant-a"})
    run = run_drift(engine, ["tenant-a"], full=True)
    assert engine.checked == ["tenant-a"] and run.to_dict()["mode"] == "full" and run.precheck is None


def test_a_precheck_that_cannot_run_sends_every_stack_to_the_engine():
    class Broken(Engine):
        def precheck(self, stacks):
            raise OSError("backend unreadable")

    run = run_drift(Broken({"tenant-a": True}), ["tenant-a"])
    [outcome] = run.outcomes
    assert outcome.status == DRIFTED and outcome.checked_by == "engine"
    assert "the pre-check failed: OSError: backend unreadable" in outcome.engine_reason
