"""A real worker process is killed (SIGKILL) in the middle of a step; after stalled-job
recovery another worker finishes the operation without duplicating anything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select, text

from api.db.models import License, Operation, Tenant
from api.db.session import Scope
from api.jobs.app import build_job_app
from api.jobs.tasks import retry_stalled_jobs
from tests.api.conftest import run_queue, signup_and_verify, signup_body

ROOT = Path(__file__).resolve().parents[2]
STALLED_AFTER = 2.0


def _start_worker(settings) -> subprocess.Popen:
    env = {
        **os.environ,
        "CAMELEER_DATABASE_URL": settings.app_dsn(),
        "CAMELEER_DATABASE_SYSTEM_URL": settings.system_dsn(),
        "CAMELEER_FINGERPRINT_KEY": settings.fingerprint_key,
        "CAMELEER_JOB_QUEUE": settings.job_queue,
        "CAMELEER_ACCESS_SIGNING_KEY": settings.access_signing_key,
        "CAMELEER_LICENSE_SIGNING_KEY": settings.license_signing_key,
        "CAMELEER_AUDIT_SIGNING_KEY": settings.audit_signing_key,
        "CAMELEER_DATA_DIR": str(settings.data_dir),
        "CAMELEER_STACK_DRIVER": "tests.api.fakes:BlockingStackDriver",
        "CAMELEER_STALLED_AFTER_SECONDS": str(STALLED_AFTER),
    }
    return subprocess.Popen([sys.executable, "-m", "api.worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_step(services, operation_id: uuid.UUID, step: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with services.db.transaction(Scope.system()) as s:
            op = s.get(Operation, operation_id)
            if op.current_step == step:
                return
        time.sleep(0.2)
    raise AssertionError(f"operation never reached {step}")


def test_killed_worker_resumes_without_duplicates(client, services, settings, driver):
    accepted = signup_and_verify(client, services, signup_body())
    operation_id, tenant_id = uuid.UUID(accepted["operation"]["id"]), uuid.UUID(accepted["tenant"]["id"])

    worker = _start_worker(services.settings)
    try:
        _wait_for_step(services, operation_id, "stack_up")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    with services.db.transaction(Scope.system()) as s:
        assert s.scalar(text("SELECT status FROM procrastinate_jobs WHERE args->>'operation_id' = :id"), {"id": str(operation_id)}) == "doing"
        customer = s.get(Tenant, tenant_id).billing_customer_id
        assert customer is not None

    time.sleep(STALLED_AFTER + 1)
    app = build_job_app(services.settings)

    async def recover() -> list[int]:
        async with app.open_async():
            return await retry_stalled_jobs(app, STALLED_AFTER)

    assert len(asyncio.run(recover())) == 1
    run_queue(services)  # a healthy worker (in-process, fast driver double) picks it up

    with services.db.transaction(Scope.system()) as s:
        op = s.get(Operation, operation_id)
        assert op.status == "SUCCEEDED"
        attempts = {step["name"]: step["attempts"] for step in op.steps}
        assert attempts["billing"] == 1 and attempts["license"] == 1 and attempts["stack_up"] == 2
        assert s.get(Tenant, tenant_id).status == "ACTIVE"
        assert s.get(Tenant, tenant_id).billing_customer_id == customer
        assert s.scalar(select(func.count()).select_from(License).where(License.tenant_id == tenant_id)) == 1
