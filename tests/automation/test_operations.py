"""The operation runner's retry, recovery and event plumbing, with the engine stubbed out.

The engine itself is exercised in tests/integration; here a stand-in `Stack` lets the
tests force each failure the runner must handle.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from pulumi.automation import Deployment
from pulumi.automation import errors as auto_errors
from pulumi.automation._cmd import CommandResult

from automation import engine
from automation.errors import ErrorKind, OperationError, RetryPolicy
from automation.history import UpdateMetadata
from automation.operations import StackOperations
from automation.settings import Settings

LOCKED = ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
          "delete the lock file with `pulumi cancel`.")


class StandInStack:
    def __init__(self, name, state_root: Path, pending=()):
        self.name = name
        self.state_root = state_root
        self.calls: list[str] = []
        self.pending = list(pending)
        self.imported: Deployment | None = None

    def cancel(self):
        self.calls.append("cancel")
        for path in (self.state_root / ".pulumi" / "locks").rglob("*.json"):
            path.unlink()

    def export_stack(self):
        self.calls.append("export")
        return Deployment(version=3, deployment={"resources": [], "pending_operations": self.pending})

    def import_stack(self, deployment):
        self.calls.append("import")
        self.imported = deployment

    def refresh(self, **kwargs):
        self.calls.append("refresh:" + (kwargs.get("message") or ""))


@pytest.fixture
def ops(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: cameleer\nruntime: python\n")
    settings = Settings.from_env({
        "CAMELEER_PROJECT_DIR": str(project), "PULUMI_CONFIG_PASSPHRASE": "x", "PATH": "/usr/bin",
        "CAMELEER_BACKEND_URL": f"file://{tmp_path / 'state'}",
    })
    delays: list[float] = []
    operations = StackOperations(settings, retry=RetryPolicy(attempts=3, initial_delay=1, multiplier=2),
                                 sleep=delays.append)
    operations.delays = delays
    operations.stand_in = StandInStack("tenant-acme", tmp_path / "state")
    monkeypatch.setattr(operations.factory, "attach", lambda name, metadata=None: operations.stand_in)
    monkeypatch.setattr(engine, "refresh", lambda stack, **kw: stack.refresh(**kw))
    monkeypatch.setattr(operations.factory, "create_or_select", lambda name, metadata=None: operations.stand_in)
    return operations


def write_lock(state_root: Path, pid: int, hostname: str | None = None):
    directory = state_root / ".pulumi" / "locks" / "organization" / "cameleer" / "tenant-acme"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "1111.json").write_text(json.dumps({
        "pid": pid, "username": "root", "hostname": hostname or socket.gethostname(),
        "timestamp": "2026-11-23T10:55:13Z"}))


def failing(*errors):
    """A body that raises `errors` in turn, then returns "ok"."""
    remaining = list(errors)

    def body(stack, capture):
        if remaining:
            raise remaining.pop(0)
        return "ok"
    return body


def cli_error(cls, stderr):
    return cls(CommandResult(stdout="", stderr=stderr, code=255))


def test_transient_failures_are_retried_with_backoff(ops):
    events = []
    body = failing(cli_error(auto_errors.CommandError, "error: dial tcp 127.0.0.1:56443: connect: connection refused"),
                   cli_error(auto_errors.CommandError, "error: context deadline exceeded"))
    assert ops._run("tenant-acme", "update", body, on_event=events.append) == "ok"
    assert ops.delays == [1, 2]
    assert [e.type for e in events] == ["started", "retry", "retry", "finished"]
    assert events[1].data["error"]["kind"] == "transient"


def test_retries_end_with_the_classified_error(ops):
    body = failing(*[cli_error(auto_errors.CommandError, "error: i/o timeout")] * 3)
    with pytest.raises(OperationError) as caught:
        ops._run("tenant-acme", "update", body)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert ops.delays == [1, 2]


def test_config_errors_are_not_retried(ops):
    events = []
    body = failing(cli_error(auto_errors.CommandError, "error: Missing required configuration variable 'cameleer:tier'"))
    with pytest.raises(OperationError) as caught:
        ops._run("tenant-acme", "update", body, on_event=events.append)
    assert caught.value.kind is ErrorKind.CONFIG
    assert ops.delays == []
    assert events[-1].type == "finished" and events[-1].severity == "error"


def test_a_dead_processs_lock_is_recovered_once_and_reported(ops, tmp_path):
    write_lock(tmp_path / "state", pid=2 ** 22 + 12345)  # beyond pid_max: certainly not running
    ops.stand_in.pending = [{"type": "creating", "resource": {"urn": "urn:pulumi:tenant-acme::cameleer::t::ns"}}]
    events = []
    meta = UpdateMetadata("alice", "tier change", operation_id="op-5")
    body = failing(cli_error(auto_errors.ConcurrentUpdateError, LOCKED))
    assert ops._run("tenant-acme", "update", body, on_event=events.append, metadata=meta) == "ok"

    calls = ops.stand_in.calls
    assert calls[:3] == ["cancel", "export", "import"]
    assert calls[3].startswith("refresh:[cameleer] who=alice op=op-5 kind=recovery why=recovery after")
    assert ops.stand_in.imported.deployment["pending_operations"] == []
    recovery = [e for e in events if e.type == "recovery"]
    assert any("stale lock" in e.message for e in recovery)
    assert any("pending creating" in e.message for e in recovery)
    assert not list((tmp_path / "state").rglob("1111.json"))


def test_a_live_lock_is_a_conflict_and_left_alone(ops, tmp_path, monkeypatch):
    write_lock(tmp_path / "state", pid=os.getpid())
    import automation.recovery as recovery_module
    from automation.locks import ProcessInfo, ProcessState, assess

    # The lock's pid is alive; make it look like the running `pulumi` it would be.
    monkeypatch.setattr(recovery_module, "assess", lambda lock, **kw: assess(
        lock, **kw, probe=lambda pid: ProcessInfo(ProcessState.RUNNING, "pulumi")))
    with pytest.raises(OperationError) as caught:
        ops._run("tenant-acme", "update", failing(cli_error(auto_errors.ConcurrentUpdateError, LOCKED)))
    assert caught.value.kind is ErrorKind.CONFLICT and caught.value.retryable
    assert "running operation" in caught.value.message
    assert ops.stand_in.calls == []
    assert list((tmp_path / "state").rglob("1111.json"))


def test_locked_without_a_visible_lock_keeps_the_engines_error(ops):
    with pytest.raises(OperationError) as caught:
        ops._run("tenant-acme", "update", failing(*[cli_error(auto_errors.ConcurrentUpdateError, LOCKED)] * 2))
    assert caught.value.kind is ErrorKind.CONFLICT
    assert "currently locked" in caught.value.message
    assert "cancel" not in ops.stand_in.calls


def test_operations_on_one_stack_are_serialized_in_process(ops):
    inner = {}

    def body(stack, capture):
        with pytest.raises(OperationError) as caught:
            with ops.gate.hold("tenant-acme", "preview", wait=0):
                pass
        inner["kind"] = caught.value.kind
        return "ok"

    ops._run("tenant-acme", "update", body)
    assert inner["kind"] is ErrorKind.CONFLICT


def test_missing_policy_pack_is_refused_before_any_engine_work(ops):
    with pytest.raises(OperationError) as caught:
        ops.preview("tenant-acme")
    assert caught.value.kind is ErrorKind.CONFIG and "PulumiPolicy.yaml" in caught.value.message


def test_a_key_that_cannot_be_destroyed_fails_the_destroy_once_the_stack_is_gone(ops, monkeypatch):
    """A sealed secrets server after `stack rm`: the engine's retries must not run the
    destroy again (they would find no stack); the call fails with the key's reason."""
    import hvac

    from automation.transit import unavailable

    removed, shredded = [], []
    monkeypatch.setattr(engine, "destroy", lambda stack, **kw: stack.calls.append("destroy"))
    monkeypatch.setattr(ops.factory, "remove_stack_record", removed.append)

    class SealedSecrets:
        def shred(self, stack: str):
            shredded.append(stack)
            raise unavailable(f"destroying the transit key of {stack}", hvac.exceptions.VaultDown())
    monkeypatch.setattr(ops.factory, "secrets", SealedSecrets())
    events = []
    with pytest.raises(OperationError) as caught:
        ops.destroy("tenant-acme", UpdateMetadata("alice", "delete"), on_event=events.append)
    assert caught.value.kind is ErrorKind.TRANSIENT and "sealed" in caught.value.message
    assert ops.stand_in.calls == ["destroy"] and removed == ["tenant-acme"] and shredded == ["tenant-acme"]
    assert ops.delays == []  # not retried inside: the stack is gone
    assert "shred-failed" in [e.type for e in events]
