"""Stale-lock judgement, backend lock listing, and the in-process operation gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from automation.errors import ErrorKind, OperationError
from automation.locks import (
    BackendLock,
    FileBackendLocks,
    OperationGate,
    ProcessInfo,
    ProcessState,
    Verdict,
    assess,
    backend_locks_for,
    probe_process,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
HOUR = 3600.0


def lock(pid=4242, hostname="vm", age=timedelta(minutes=5)):
    return BackendLock("k", pid, "root", hostname, NOW - age)


def probe_returning(state, name="pulumi"):
    return lambda pid: ProcessInfo(state, name)


def test_same_host_dead_pid_is_stale():
    result = assess(lock(), now=NOW, hostname="vm", stale_after_seconds=HOUR, probe=probe_returning(ProcessState.GONE))
    assert result.verdict is Verdict.STALE and "no longer exists" in result.reason


def test_same_host_zombie_is_stale():
    result = assess(lock(), now=NOW, hostname="vm", stale_after_seconds=HOUR,
                    probe=probe_returning(ProcessState.ZOMBIE))
    assert result.verdict is Verdict.STALE


def test_same_host_pid_reused_by_another_program_is_stale():
    result = assess(lock(), now=NOW, hostname="vm", stale_after_seconds=HOUR,
                    probe=probe_returning(ProcessState.RUNNING, "postgres"))
    assert result.verdict is Verdict.STALE and "postgres" in result.reason


def test_same_host_running_pulumi_is_live_even_when_old():
    result = assess(lock(age=timedelta(days=3)), now=NOW, hostname="vm", stale_after_seconds=HOUR,
                    probe=probe_returning(ProcessState.RUNNING, "pulumi"))
    assert result.verdict is Verdict.LIVE


def test_other_host_is_live_until_older_than_the_limit():
    never = lambda pid: pytest.fail("must not probe another host's pid")  # noqa: E731
    young = assess(lock(hostname="worker-2", age=timedelta(minutes=30)), now=NOW, hostname="vm",
                   stale_after_seconds=HOUR, probe=never)
    old = assess(lock(hostname="worker-2", age=timedelta(hours=2)), now=NOW, hostname="vm",
                 stale_after_seconds=HOUR, probe=never)
    assert young.verdict is Verdict.LIVE
    assert old.verdict is Verdict.STALE and "worker-2" in old.reason


def test_probe_sees_this_process_and_a_reaped_child():
    assert probe_process(os.getpid()).state is ProcessState.RUNNING
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert probe_process(child.pid).state is ProcessState.GONE


def test_probe_sees_an_unreaped_child_as_zombie():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline and probe_process(child.pid).state is not ProcessState.ZOMBIE:
        time.sleep(0.05)
    try:
        assert probe_process(child.pid).state is ProcessState.ZOMBIE
    finally:
        child.wait()


def test_file_backend_locks_are_read_from_the_engines_layout(tmp_path):
    directory = tmp_path / ".pulumi" / "locks" / "organization" / "cameleer" / "tenant-acme"
    directory.mkdir(parents=True)
    (directory / "6d0a4c52.json").write_text(json.dumps(
        {"pid": 5584, "username": "root", "hostname": "vm", "timestamp": "2026-11-23T10:55:13.754432348Z"}))
    (directory / "6d0a4c52.json.attrs").write_text("{}")  # the engine's blob attributes: not a lock
    other = tmp_path / ".pulumi" / "locks" / "organization" / "cameleer" / "tenant-other"
    other.mkdir(parents=True)
    (other / "x.json").write_text(json.dumps({"pid": 1, "username": "u", "hostname": "h"}))

    store = backend_locks_for(f"file://{tmp_path}", "cameleer")
    assert isinstance(store, FileBackendLocks)
    [found] = store.list("tenant-acme")
    assert (found.pid, found.hostname) == (5584, "vm")
    assert found.timestamp == datetime(2026, 11, 23, 10, 55, 13, 754432, tzinfo=timezone.utc)
    assert store.list("tenant-none") == []


def test_a_file_backend_url_with_a_query_names_the_same_state_directory(tmp_path):
    store = backend_locks_for(f"file://{tmp_path}?metadata=skip", "cameleer")
    assert isinstance(store, FileBackendLocks) and store.root == tmp_path


def test_torn_sidecars_of_the_stack_are_removed_and_sound_ones_kept(tmp_path):
    stacks = tmp_path / ".pulumi" / "stacks" / "cameleer"
    stacks.mkdir(parents=True)
    (stacks / "tenant-acme.json").write_text("{}")
    (stacks / "tenant-acme.json.attrs").write_bytes(b"")  # killed between create and write
    (stacks / "tenant-acme.json.bak.attrs").write_text('{"user.content_type": "application/json"}')
    (stacks / "tenant-other.json.attrs").write_bytes(b"")  # another stack's: not ours to touch

    removed = backend_locks_for(f"file://{tmp_path}", "cameleer").remove_torn_writes("tenant-acme")

    assert removed == [str(stacks / "tenant-acme.json.attrs")]
    assert sorted(p.name for p in stacks.iterdir()) == [
        "tenant-acme.json", "tenant-acme.json.bak.attrs", "tenant-other.json.attrs"]


def test_unreadable_lock_files_are_reported_not_skipped(tmp_path):
    directory = tmp_path / ".pulumi" / "locks" / "organization" / "cameleer" / "tenant-acme"
    directory.mkdir(parents=True)
    (directory / "broken.json").write_text("{not json")
    [found] = FileBackendLocks(tmp_path, "cameleer").list("tenant-acme")
    assert found.pid == 0 and found.timestamp is None


def test_postgres_url_keeps_its_table_and_rejects_unsafe_names():
    store = backend_locks_for("postgres://u:p@127.0.0.1:5432/db?table=state_v2&sslmode=disable", "cameleer")
    assert store.table == "state_v2"
    assert "table=" not in store.dsn and "sslmode=disable" in store.dsn
    assert store.key_prefix == "db/"
    with pytest.raises(OperationError):
        backend_locks_for("postgres://u:p@h/db?table=x;drop", "cameleer")
    assert backend_locks_for("s3://bucket", "cameleer") is None


def test_gate_runs_one_operation_per_stack():
    gate = OperationGate(4)
    inside = threading.Event()
    release = threading.Event()

    def first():
        with gate.hold("tenant-acme", "update"):
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(5)
    assert gate.busy("tenant-acme") == "update"
    with pytest.raises(OperationError) as caught:
        with gate.hold("tenant-acme", "preview", wait=0):
            pass
    assert caught.value.kind is ErrorKind.CONFLICT and "update" in caught.value.message
    with gate.hold("tenant-other", "preview", wait=0):  # other stacks are not blocked
        pass
    release.set()
    worker.join(5)
    with gate.hold("tenant-acme", "preview", wait=0):
        assert gate.busy("tenant-acme") == "preview"
    assert gate.busy("tenant-acme") is None


def test_gate_bounds_concurrent_operations():
    gate = OperationGate(2)
    running, peak, lock_ = [0], [0], threading.Lock()

    def work(i):
        with gate.hold(f"tenant-{i}", "preview"):
            with lock_:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock_:
                running[0] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2


def test_gate_releases_the_stack_when_the_operation_fails():
    gate = OperationGate(1)
    with pytest.raises(RuntimeError):
        with gate.hold("tenant-acme", "update"):
            raise RuntimeError("boom")
    with gate.hold("tenant-acme", "update", wait=0):
        pass
