"""A worker killed with SIGKILL in the middle of `pulumi up`, on the real engine (issue 11).

Two workers under different host names (CAMELEER_WORKER_HOST_NAME), as pods would be. Only
the worker process is killed, not its process group: the engine it started must not outlive
it, and the other worker, which cannot judge the dead one's backend lock by its host, must
take the stack's lease over once it stops beating and finish the signup within two minutes.
Afterwards no process of the killed operation may be left.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import _SESSION_SLUGS
from tests.integration.control_plane import ControlPlane
from tests.integration.test_control_plane_engine import _stack_up_progress, wait_for

pytestmark = pytest.mark.engine

FINISH_WITHIN = 120


@pytest.fixture(scope="module")
def cp(tmp_path_factory, tenant_database_url, kubeconfig, pulumi_bin, shared_baseline):
    plane = ControlPlane(tmp_path_factory.mktemp("worker-leases"), tenant_database_url,
                         worker_env={"CAMELEER_STALLED_AFTER_SECONDS": "5", "CAMELEER_READINESS_POLL_SECONDS": "1"})
    try:
        with plane.serving() as problems:
            yield plane
    finally:
        _SESSION_SLUGS.extend(plane.slugs)
    assert not problems, "cleanup:\n" + "\n".join(problems)


def processes_of(holder: str, session_id: int) -> list[str]:
    """Live processes of the killed operation: in its engine's session, or tagged with its
    lease holder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "status").read_text().split("State:")[1].split()[0] == "Z":
                continue
            tagged = f"CAMELEER_LEASE_HOLDER={holder}".encode() in (entry / "environ").read_bytes().split(b"\0")
            if tagged or os.getsid(int(entry.name)) == session_id:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:120]
                found.append(f"{entry.name} {command!r}")
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return found


def test_a_worker_killed_mid_up_is_taken_over_by_another_host_within_two_minutes(cp):
    slug = cp.unique_slug("lease")
    response = cp.signup(slug, "low")
    assert response.status_code == 202, response.text
    operation_id = response.json()["operation"]["id"]
    headers = cp.login(f"owner@{slug}.example.com")

    worker_a = cp.start_worker(CAMELEER_WORKER_HOST_NAME="worker-a")
    wait_for(lambda: _stack_up_progress(cp, operation_id) >= 3, 240, "the engine to create resources", interval=0.05)
    lease = cp.row("SELECT holder, host, session_id FROM stack_leases WHERE stack = %s", f"tenant-{slug}")
    assert lease is not None and lease[1] == "worker-a" and lease[2], lease
    holder, _, session_id = lease
    assert processes_of(holder, session_id), "no engine process of the running operation was found"
    cp.start_worker(CAMELEER_WORKER_HOST_NAME="worker-b")

    os.kill(worker_a.pid, signal.SIGKILL)  # the worker alone, as the OOM killer would
    worker_a.wait(timeout=30)
    cp.workers.remove(worker_a)
    killed_at = time.monotonic()
    state = cp.root / "state" / ".pulumi"
    assert list(state.glob(f"locks/**/tenant-{slug}/*.json")), "the killed update left no lock"

    operation = cp.wait_operation(operation_id, headers, timeout=FINISH_WITHIN + 30)
    took = time.monotonic() - killed_at
    assert operation["status"] == "SUCCEEDED", f"{operation['error']}\n{cp.logs()}"
    assert took <= FINISH_WITHIN, f"the other worker finished {took:.0f} s after the kill"

    assert processes_of(holder, session_id) == [], "processes of the killed operation outlived its recovery"
    assert cp.scalar("SELECT count(*) FROM stack_leases WHERE stack = %s", f"tenant-{slug}") == 0
    recovered = cp.scalar(
        "SELECT string_agg(payload->>'message', ' | ') FROM stack_events WHERE operation_id = %s "
        "AND event_type = 'recovery'", operation_id)
    assert "worker-a" in recovered and "expired; taken over" in recovered, recovered
    assert "stale lock" in recovered, recovered
    assert not list(state.glob(f"locks/**/tenant-{slug}/*.json"))
