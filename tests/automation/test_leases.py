"""Stack leases against the real PostgreSQL: a throwaway platform database migrated to head
(migration 0014 creates `stack_leases`), used as the app role the workers connect as."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from pulumi.automation import errors as auto_errors

from automation.errors import ErrorKind
from automation.leases import (
    HOLDER_VARIABLE,
    HeldLease,
    HolderIdentity,
    LeaseHeld,
    PostgresLeases,
    end_processes,
    session_members,
)
from automation.locks import BackendLock, Verdict, assess
from tests.automation.test_operations import LOCKED, cli_error, failing, ops  # noqa: F401 - the fixture

TTL = 30.0


@pytest.fixture(scope="module")
def lease_db():
    from api.migrate import upgrade
    from api.settings import libpq_dsn
    from tests.api.database import create_database, drop_database

    db = create_database("cameleer_leases")
    try:
        upgrade(url=db.url(db.owner), app_role=db.app_role)
        yield libpq_dsn(db.url(db.app))
    finally:
        drop_database(db)


@pytest.fixture
def store(lease_db):
    with psycopg.connect(lease_db, autocommit=True) as conn:
        conn.execute("DELETE FROM stack_leases")
    return PostgresLeases(lease_db)


def expire(dsn: str, stack: str) -> None:
    """What a holder that stopped beating looks like once its expiry has passed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE stack_leases SET expires_at = now() - interval '1 second' WHERE stack = %s", (stack,))


WORKER_A, WORKER_B = HolderIdentity("worker-a"), HolderIdentity("worker-b")


def take(store, identity=WORKER_A, stack="tenant-acme", ttl=TTL):
    return store.acquire(stack, identity.new_holder(), identity, "update", "op-1", ttl)


# --------------------------------------------------------------------------- the store


def test_a_free_stack_is_leased_and_a_second_holder_is_refused_with_a_retryable_conflict(store):
    first = take(store)
    assert first.previous is None and first.lease.host == "worker-a" and first.lease.pid == os.getpid()
    with pytest.raises(LeaseHeld) as refused:
        take(store, WORKER_B)
    assert refused.value.kind is ErrorKind.CONFLICT and refused.value.kind.retryable
    assert refused.value.current.holder == first.lease.holder
    assert 25 < refused.value.seconds_left <= TTL
    assert store.get("tenant-acme").holder == first.lease.holder


def test_the_holder_may_acquire_its_own_lease_again(store):
    first = take(store)
    again = store.acquire("tenant-acme", first.lease.holder, WORKER_A, "update", "op-1", TTL)
    assert again.previous is None and again.lease.holder == first.lease.holder


def test_renewal_pushes_the_expiry_and_only_the_holder_renews(store):
    first = take(store, ttl=5)
    assert store.renew("tenant-acme", first.lease.holder, 60)
    assert (store.get("tenant-acme").expires_at - first.lease.expires_at).total_seconds() > 50
    assert not store.renew("tenant-acme", "worker-b:1:someone", 60)


def test_an_expired_lease_is_taken_over_and_its_holder_can_no_longer_renew(store, lease_db):
    first = take(store)
    expire(lease_db, "tenant-acme")
    second = take(store, WORKER_B)
    assert second.previous is not None and second.previous.holder == first.lease.holder
    assert second.lease.host == "worker-b"
    assert not store.renew("tenant-acme", first.lease.holder, TTL)
    store.release("tenant-acme", first.lease.holder)  # a late release of the old holder changes nothing
    assert store.get("tenant-acme").holder == second.lease.holder


def test_release_frees_the_stack(store):
    first = take(store)
    store.release("tenant-acme", first.lease.holder)
    assert store.get("tenant-acme") is None
    assert take(store, WORKER_B).previous is None


def test_concurrent_acquisitions_of_a_free_stack_have_one_winner(store):
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def contend(n: int) -> None:
        identity = HolderIdentity(f"worker-{n}")
        barrier.wait()
        try:
            take(store, identity, stack="tenant-race")
            outcomes.append("won")
        except LeaseHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]


def test_a_held_lease_is_renewed_past_its_expiry_until_released(store):
    held = HeldLease(store, take(store, ttl=2), heartbeat_seconds=0.3, ttl_seconds=2).start()
    try:
        time.sleep(3)
        with pytest.raises(LeaseHeld):
            take(store, WORKER_B)
        assert not held.lost.is_set()
    finally:
        held.release()
    assert take(store, WORKER_B).previous is None


# --------------------------------------------------------------------------- engine processes


def spawn_group(holder: str) -> subprocess.Popen:
    """An engine stand-in: a session leader with a plugin in a process group of its own (as the
    engine starts its plugins), both tagged with `holder`."""
    script = "import subprocess, sys, time; " \
             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], process_group=0); " \
             "print('ready', flush=True); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, HOLDER_VARIABLE: holder},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_dead_holders_engine_session_is_ended_by_the_takeover(store):
    acquisition = take(store)
    engine = spawn_group(acquisition.lease.holder)
    try:
        store.note_engine_session("tenant-acme", acquisition.lease.holder, engine.pid)
        lease = store.get("tenant-acme")
        members = session_members(lease)
        assert lease.session_id == engine.pid and len(members) == 2 and all(members.values())
        assert len({os.getpgid(pid) for pid in members}) == 2  # the plugin leads a group of its own
        ended = end_processes(lease)
        assert sorted(ended) == sorted(members)
        engine.wait(timeout=10)
        assert session_members(lease) == {}
    finally:
        _kill(engine)


def test_a_session_that_does_not_carry_the_holder_is_left_alone(store):
    acquisition = take(store)
    stranger = spawn_group("someone-else")
    try:
        lease = replace(acquisition.lease, session_id=stranger.pid)
        assert end_processes(lease) == []
        assert stranger.poll() is None
        elsewhere = replace(acquisition.lease, holder="someone-else", session_id=stranger.pid,
                            process_namespace="another-machine/pid:[1]")
        assert end_processes(elsewhere) == [] and stranger.poll() is None
    finally:
        _kill(stranger)


def test_a_holder_that_loses_its_lease_ends_its_own_engine(store, lease_db):
    acquisition = take(store, ttl=2)
    held = HeldLease(store, acquisition, heartbeat_seconds=0.3, ttl_seconds=2)
    engine = spawn_group(acquisition.lease.holder)
    try:
        held.engine_started(engine.pid)
        with psycopg.connect(lease_db, autocommit=True) as conn:  # taken over while this holder hung
            conn.execute("UPDATE stack_leases SET holder = 'worker-b:1:x' WHERE stack = 'tenant-acme'")
        held.start()
        assert held.lost.wait(5)
        engine.wait(timeout=10)
    finally:
        held.release()
        _kill(engine)
    assert store.get("tenant-acme").holder == "worker-b:1:x"  # the loser's release took nothing


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


# --------------------------------------------------------------------------- locks judged by the lease


def test_a_fresh_lock_from_another_host_is_stale_under_the_lease_and_live_without():
    lock = BackendLock("k", 4242, "root", "worker-b-pod", datetime.now(timezone.utc))
    assert assess(lock, hostname="here", stale_after_seconds=6 * 3600).verdict is Verdict.LIVE
    leased = assess(lock, hostname="here", stale_after_seconds=6 * 3600, leased=True)
    assert leased.verdict is Verdict.STALE and "lease" in leased.reason


def test_a_running_pulumi_on_this_host_stays_live_under_the_lease():
    from automation.locks import ProcessInfo, ProcessState

    lock = BackendLock("k", 4242, "root", "here", datetime.now(timezone.utc))
    verdict = assess(lock, hostname="here", stale_after_seconds=1, leased=True,
                     probe=lambda pid: ProcessInfo(ProcessState.RUNNING, "pulumi"))
    assert verdict.verdict is Verdict.LIVE


def write_fresh_lock(state_root: Path, hostname: str) -> None:
    directory = state_root / ".pulumi" / "locks" / "organization" / "cameleer" / "tenant-acme"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "2222.json").write_text(json.dumps({
        "pid": 77, "username": "root", "hostname": hostname,
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}))


def test_an_operation_takes_over_an_expired_lease_and_recovers_the_dead_holders_lock(ops, store, lease_db,
                                                                                     tmp_path):  # noqa: F811
    dead = take(store, HolderIdentity("worker-a-pod"))
    expire(lease_db, "tenant-acme")
    write_fresh_lock(tmp_path / "state", "worker-a-pod")
    ops.leases = store
    events = []
    seen_env = {}

    def body(stack, capture):
        seen_env.update(ops.factory.env_vars("tenant-acme"))
        return failing(cli_error(auto_errors.ConcurrentUpdateError, LOCKED))(stack, capture) if not ops.stand_in.calls \
            else "ok"

    assert ops._run("tenant-acme", "update", body, on_event=events.append) == "ok"
    messages = [e.message for e in events if e.type == "recovery"]
    assert any("expired; taken over" in m and "worker-a-pod" in m for m in messages), messages
    assert any(m.startswith("stale lock of root@worker-a-pod") for m in messages), messages
    assert ops.stand_in.calls[0] == "cancel"
    assert seen_env[HOLDER_VARIABLE].startswith(f"{ops.settings.host_name}:{os.getpid()}:")
    assert seen_env[HOLDER_VARIABLE] != dead.lease.holder
    assert store.get("tenant-acme") is None  # released at the end


def test_without_the_lease_a_fresh_lock_from_another_host_is_a_conflict(ops, tmp_path):  # noqa: F811
    write_fresh_lock(tmp_path / "state", "worker-a-pod")
    body = failing(*[cli_error(auto_errors.ConcurrentUpdateError, LOCKED)] * 3)
    with pytest.raises(Exception) as caught:
        ops._run("tenant-acme", "update", body)
    assert caught.value.kind is ErrorKind.CONFLICT and "stack is locked by a running operation" in str(caught.value)
    assert "cancel" not in ops.stand_in.calls


def test_a_live_lease_makes_an_operation_a_conflict_before_any_engine_work(ops, store):  # noqa: F811
    take(store, HolderIdentity("worker-a-pod"))
    ops.leases = store
    ran = []
    with pytest.raises(LeaseHeld):
        ops._run("tenant-acme", "update", lambda stack, capture: ran.append(1))
    assert ran == [] and ops.delays == []


def test_a_lease_that_missed_its_heartbeat_is_waited_for_then_taken_over(ops, store, lease_db):  # noqa: F811
    take(store, HolderIdentity("worker-a-pod"))
    with psycopg.connect(lease_db, autocommit=True) as conn:  # last heartbeat 25 s ago
        conn.execute("UPDATE stack_leases SET heartbeat_at = now() - interval '25 seconds', "
                     "expires_at = now() + interval '5 seconds'")
    ops.leases = store
    waited = []
    ops._sleep = lambda seconds: (waited.append(seconds), expire(lease_db, "tenant-acme"))
    events = []
    assert ops._run("tenant-acme", "update", lambda stack, capture: "ok", on_event=events.append) == "ok"
    assert len(waited) == 1 and 4 < waited[0] <= 6
    assert [e.type for e in events][:2] == ["lease-wait", "recovery"]


def test_an_unreachable_lease_database_is_a_transient_failure(ops):  # noqa: F811
    ops.leases = PostgresLeases("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    with pytest.raises(Exception) as caught:
        ops._run("tenant-acme", "update", lambda stack, capture: "ok")
    assert caught.value.kind is ErrorKind.TRANSIENT and "nobody" not in str(caught.value)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_lease_whose_holder_died_on_this_machine_is_taken_over_before_it_expires(store):
    """A worker killed on this machine: the next one need not wait out the lease's TTL."""
    killed = HolderIdentity("worker-a", pid=dead_pid())
    first = take(store, killed, ttl=300)
    second = take(store, WORKER_B, ttl=300)
    assert second.previous is not None and second.previous.holder == first.lease.holder
    assert second.lease.holder != first.lease.holder


def test_a_dead_pid_of_another_machine_says_nothing_and_the_lease_holds(store):
    elsewhere = HolderIdentity("worker-a-pod", pid=dead_pid(), namespace="another-machine/pid:[1]")
    take(store, elsewhere, ttl=300)
    with pytest.raises(LeaseHeld):
        take(store, WORKER_B, ttl=300)
