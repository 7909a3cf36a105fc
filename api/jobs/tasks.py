"""The worker's tasks: run an operation, recover jobs of workers that died, signing-key
maintenance, audit checkpoints, license renewal, the hourly purge of expired rows
(api.jobs.housekeeping), on-demand drift checks, and billing's periodic work."""

from __future__ import annotations

import logging
import uuid

import procrastinate
from procrastinate import JobContext, RetryStrategy

from api.drift.on_demand import CHECK_TASK as DRIFT_CHECK_TASK
from api.drift.on_demand import run_check as run_drift_check
from api.jobs.enqueue import RUN_OPERATION_TASK
from api.operations.runner import OperationFailed, OperationRunner
from api.settings import Settings

log = logging.getLogger(__name__)
RECOVER_TASK = "recover_stalled_jobs"
AUDIT_CHECKPOINT_TASK = "audit_checkpoint"


class OperationRetryStrategy(RetryStrategy):
    """Exponential backoff for any error, except an operation already recorded as FAILED."""

    def get_retry_decision(self, *, exception: BaseException, job):
        if isinstance(exception, OperationFailed):
            return None
        return super().get_retry_decision(exception=exception, job=job)


def _every(app: procrastinate.App, cron: str, periodic_id: str, scheduled: bool):
    """`app.periodic`, or nothing: a worker that drains the queue and stops (tests, one-shot
    runs) must not schedule periodic jobs while it shuts down."""
    return app.periodic(cron=cron, periodic_id=periodic_id) if scheduled else (lambda task: task)


def register_tasks(app: procrastinate.App, settings: Settings, *, periodic: bool = True) -> None:
    max_attempts = settings.job_max_attempts

    @app.task(
        name=RUN_OPERATION_TASK,
        queue=settings.job_queue,
        pass_context=True,
        retry=OperationRetryStrategy(max_attempts=max_attempts, exponential_wait=settings.job_backoff_base_seconds),
    )
    def run_operation(context: JobContext, operation_id: str) -> None:
        services = context.additional_context["services"]
        final = context.job.attempts >= max_attempts
        OperationRunner(services).run(uuid.UUID(operation_id), final_attempt=final)

    @_every(app, "* * * * *", "recover-stalled", periodic)
    @app.task(name=RECOVER_TASK, queue=settings.job_queue, pass_context=True)
    async def recover_stalled_jobs(context: JobContext, timestamp: int) -> None:
        await retry_stalled_jobs(context.app, settings.stalled_after_seconds)

    @_every(app, "17 * * * *", "signing-keys-maintain", periodic)
    @app.task(name="signing_keys_maintain", queue=settings.job_queue, pass_context=True)
    def signing_keys_maintain(context: JobContext, timestamp: int) -> None:
        from api.auth.maintenance import maintain_signing_keys

        maintain_signing_keys(context.additional_context["services"])

    @_every(app, "*/10 * * * *", "audit-checkpoint", periodic)
    @app.task(name=AUDIT_CHECKPOINT_TASK, queue=settings.job_queue, pass_context=True)
    def audit_checkpoint(context: JobContext, timestamp: int) -> None:
        from api.audit.checkpoint import take_checkpoint

        take_checkpoint(context.additional_context["services"])

    @_every(app, "41 * * * *", "purge-expired-rows", periodic)
    @app.task(name="purge_expired_rows", queue=settings.job_queue, pass_context=True)
    def purge_expired_rows(context: JobContext, timestamp: int) -> None:
        from api.jobs.housekeeping import purge_expired_rows

        purge_expired_rows(context.additional_context["services"])

    @_every(app, "* * * * *", "capacity-waits", periodic)
    @app.task(name="capacity_waits", queue=settings.job_queue, pass_context=True)
    def capacity_waits(context: JobContext, timestamp: int) -> None:
        from api.clusters.capacity import resume_and_report

        resume_and_report(context.additional_context["services"])

    @_every(app, "23 * * * *", "license-renewal", periodic)
    @app.task(name="license_renewal", queue=settings.job_queue, pass_context=True)
    def license_renewal(context: JobContext, timestamp: int) -> None:
        from api.licensing.renewal import renew_due_licenses

        renew_due_licenses(context.additional_context["services"])

    @app.task(name=DRIFT_CHECK_TASK, queue=settings.job_queue, pass_context=True)
    def drift_check(context: JobContext, requested_by: str | None = None) -> None:
        run_drift_check(context.additional_context["services"], context.job.id, requested_by)

    register_billing_tasks(app, settings, periodic=periodic)


def register_billing_tasks(app: procrastinate.App, settings: Settings, *, periodic: bool = True) -> None:
    """Billing's periodic work: enforce billing state, sample usage, send complete hours."""

    @_every(app, "* * * * *", "billing-enforce", periodic)
    @app.task(name="billing_enforce", queue=settings.job_queue, pass_context=True)
    def billing_enforce(context: JobContext, timestamp: int) -> None:
        from api.billing.enforcement import enforce_all

        enforce_all(context.additional_context["services"])

    @_every(app, "*/5 * * * *", "metering-collect", periodic)
    @app.task(name="metering_collect", queue=settings.job_queue, pass_context=True)
    def metering_collect(context: JobContext, timestamp: int) -> None:
        from api.billing.metering import collect, kube_client_for_cluster

        collect(context.additional_context["services"], kube_client_for_cluster)

    @_every(app, "5 * * * *", "metering-hourly", periodic)
    @app.task(name="metering_hourly", queue=settings.job_queue, pass_context=True)
    def metering_hourly(context: JobContext, timestamp: int) -> None:
        from api.billing.metering import run_hourly

        run_hourly(context.additional_context["services"])


async def retry_stalled_jobs(app: procrastinate.App, stalled_after_seconds: float) -> list[int]:
    """Put the jobs of workers that stopped heart-beating back in the queue. They resume
    where they stopped, because their steps are recorded and idempotent."""
    retried = []
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_seconds):
        log.warning("retrying stalled job %s (%s)", job.id, job.task_name)
        await app.job_manager.retry_job(job)
        retried.append(job.id)
    return retried
