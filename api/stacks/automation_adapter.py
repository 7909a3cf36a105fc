"""The StackDriver of the real engine: `api.stacks.driver.StackDriver` over `automation`.

`automation` (and with it the Pulumi Automation API) is imported on first use, so the API
process and the fast tests never load the engine. Every call runs its engine operation in
its own CLI process; the automation layer serializes operations per stack, recovers stale
locks, retries transient failures and classifies the rest. Each operation leases its stack in
the platform database (`stack_leases`, automation/leases.py), so that a worker that dies
mid-operation is noticed by the others within the lease's expiry, whatever host it ran on.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property, wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from api.stacks.driver import (
    ChangeOrigin,
    ClusterNotReady,
    EventSink,
    MoveSource,
    PreviewResult,
    ProvisionResult,
    Readiness,
    StackChangeRefused,
    StackEventData,
    StackUnavailable,
    StackUpdate,
    TenantRef,
)

if TYPE_CHECKING:
    from automation.errors import OperationError
    from automation.events import OperationEvent
    from automation.history import UpdateMetadata
    from automation.operations import StackOperations
    from automation.tenants import TenantSpec

ACTOR = "control-plane"
P = ParamSpec("P")
R = TypeVar("R")


def _permanent_failures_refused(method: Callable[P, R]) -> Callable[P, R]:
    """An engine failure that no retry can fix (policy, config or validation, a rollout that
    cannot finish, a missing stack) ends the step at once as `StackChangeRefused`, saying why;
    so does a tenant the platform's settings cannot make a stack of (`TenantSpecError`, e.g.
    CAMELEER_TENANT_SECRETS_ADDRESS unset: the worker's environment does not change by itself).
    Everything else goes on to the job queue, which retries it with backoff: conflicts and
    transient failures, and a failure nobody classified (it may be a transient one whose
    wording no rule knows; the queue's attempts bound it)."""

    @wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        from automation.errors import ErrorKind, OperationError
        from automation.tenants import TenantSpecError

        try:
            return method(*args, **kwargs)
        except TenantSpecError as error:
            raise StackChangeRefused(str(error)) from error
        except OperationError as error:
            if error.kind in (ErrorKind.POLICY, ErrorKind.CONFIG, ErrorKind.ROLLOUT, ErrorKind.NOT_FOUND):
                raise StackChangeRefused(_refusal(error)) from error
            raise

    return call


def _refusal(error: OperationError) -> str:
    """The error and, for a policy failure, what each mandatory violation says."""
    violations = [f"{v.policy}: {v.message}" for v in error.policy_violations if v.mandatory]
    return "; ".join([str(error), *violations])


class BaselineMissing(ClusterNotReady):
    """The shared cluster's baseline stack is not up (its tiers' PriorityClasses are missing)."""


class AutomationStackDriver:
    """Drives tenant stacks through `automation` (Pulumi Automation API, local programs)."""

    @cached_property
    def _ops(self) -> StackOperations:
        try:
            from automation.leases import PostgresLeases
            from automation.operations import StackOperations
        except ImportError as exc:  # pragma: no cover - an installation problem
            raise StackUnavailable(f"the automation layer is not importable: {exc}") from exc
        from api.settings import get_settings, libpq_dsn

        return StackOperations(leases=PostgresLeases(libpq_dsn(get_settings().app_dsn())))

    @_permanent_failures_refused
    def provision(
        self,
        tenant: TenantRef,
        tier: str,
        environments: Sequence[str],
        license_jwt: str,
        suspended: bool,
        on_event: EventSink,
        moving_from: MoveSource | None = None,
        *,
        origin: ChangeOrigin,
    ) -> ProvisionResult:
        from automation.tenants import TenantPlatform, stack_config

        spec = _spec(tenant, tier, environments, license_jwt, suspended,
                     moving_from.database_passwords if moving_from else None)
        if tenant.placement.startswith("shared"):
            self._ensure_baseline(tenant.placement, tier, on_event, origin)
        reason = f"{'suspend' if suspended else 'provision'} tenant {tenant.slug} ({tier})"
        # Outputs are not read back: the service needs none, and each costs a CLI process.
        result = self._ops.up(
            spec.stack_name,
            _metadata(reason, origin),
            config=self._with_operator_settings(stack_config(spec, TenantPlatform.from_env()), tenant, moving_from),
            create=True,
            on_event=_relay(on_event),
        )
        return ProvisionResult(stack=result.stack, summary=dict(result.resource_changes))

    def _with_operator_settings(self, config: dict[str, Any], tenant: TenantRef,
                                moving_from: MoveSource | None) -> dict[str, Any]:
        """`config`, plus on a move what operators set on the old stack (e.g. driftCorrection)."""
        from automation.tenants import operator_settings, stack_name_for

        if moving_from is None:
            return config
        old = self._ops.factory.read_stack_config(stack_name_for(tenant.slug, moving_from.placement))
        return {**operator_settings(old, config), **config}

    def _ensure_baseline(self, placement: str, tier: str, on_event: EventSink, origin: ChangeOrigin) -> None:
        """The first tenant placed on a newly registered shared cluster brings its baseline up."""
        from automation.tenants import cluster_of

        try:
            self._require_baseline(placement, tier)
        except BaselineMissing:
            self.ensure_cluster_baseline(cluster_of(placement), on_event, origin)

    def _require_baseline(self, placement: str, tier: str) -> None:
        """A shared cluster takes tenants once its shared-<cluster> stack is up: without the
        tier's PriorityClass every tenant pod would be refused. BaselineMissing when it is not;
        ClusterNotReady (retried) when the cluster does not answer."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from automation.tenants import cluster_of
        from components.catalog import get_tier

        cluster, priority_class = cluster_of(placement), get_tier(tier).priority_class_name
        try:
            client.SchedulingV1Api(self._cluster_client(placement)).read_priority_class(priority_class)
        except ApiException as exc:
            if exc.status != 404:
                raise ClusterNotReady(f"cluster {cluster}: cannot read PriorityClass {priority_class}: "
                                      f"{exc.reason}") from None
            raise BaselineMissing(f"cluster {cluster} has no baseline yet (PriorityClass {priority_class} is missing)"
                                  ) from None

    def ensure_cluster_baseline(self, cluster: str, on_event: EventSink | None = None,
                                origin: ChangeOrigin | None = None) -> ProvisionResult:
        """Bring up the shared cluster's baseline stack, `shared-<cluster>` (idempotent: a
        no-change update when it is up already). It refreshes first, so a baseline object
        deleted out of band is put back. Its settings file is the service's. `origin` is the
        operation that needs it, if one does (an operator's setup has none)."""
        from automation.tenants import TenantPlatform, baseline_config

        stack = f"shared-{cluster}"
        result = self._ops.up(
            stack, _metadata(f"baseline of shared cluster {cluster}", origin),
            config=baseline_config(TenantPlatform.from_env()), create=True, refresh=True,
            on_event=_relay(on_event) if on_event else None,
        )
        return ProvisionResult(stack=result.stack, summary=dict(result.resource_changes))

    @_permanent_failures_refused
    def preview(
        self, tenant: TenantRef, tier: str, environments: Sequence[str], license_jwt: str, on_event: EventSink
    ) -> PreviewResult:
        from automation.tenants import TenantPlatform, stack_config

        spec = _spec(tenant, tier, environments, license_jwt, suspended=False)
        if spec.stack_name not in self._ops.stack_names():
            # A placement move previews a stack that does not exist yet: everything is created.
            return PreviewResult(stack=spec.stack_name, changes={"create": "all (new stack)"})
        result = self._ops.preview(
            spec.stack_name, config=stack_config(spec, TenantPlatform.from_env()), on_event=_relay(on_event),
        )
        return PreviewResult(
            stack=result.stack,
            changes={"summary": dict(result.resource_changes),
                     "resources": [change.to_dict() for change in result.changed]},
            policy_violations=[violation.to_dict() for violation in result.policy_violations],
        )

    def readiness(self, tenant: TenantRef) -> Readiness:
        from automation.readiness import check_readiness
        from automation.tenants import stack_name_for

        stack = stack_name_for(tenant.slug, tenant.placement)
        config = self._ops.factory.read_stack_config(stack)
        if not config:
            return Readiness(ready=False, detail=f"stack {stack} has no configuration yet")
        state = check_readiness(
            self._cluster_client(tenant.placement), tenant.slug,
            tuple(config.get("cameleer:environments") or ()),
            suspended=str(config.get("cameleer:suspended")).lower() == "true",
        )
        return Readiness(ready=state.ready, detail=state.detail)

    def database_credentials(self, tenant: TenantRef, environments: Sequence[str]) -> dict[str, dict[str, str]]:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from components.naming import namespace_name
        from components.tenant_namespace import DATABASE_SECRET

        core = client.CoreV1Api(self._cluster_client(tenant.placement))
        credentials = {}
        for environment in environments:
            namespace = namespace_name(tenant.slug, environment)
            try:
                secret = core.read_namespaced_secret(DATABASE_SECRET, namespace)
            except ApiException as exc:
                raise ClusterNotReady(f"reading the Secret {namespace}/{DATABASE_SECRET}: {exc.reason}") from None
            credentials[environment] = {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
        return credentials

    def _cluster_client(self, placement: str):
        from automation.readiness import api_client
        from automation.tenants import cluster_of
        from stacks.clusters import ClusterLookupError, kubeconfig_content

        try:
            # As the engine process sees it: this process's environment and the engine's settings.
            return api_client(kubeconfig_content(cluster_of(placement), {**os.environ, **self._ops.factory.env_vars()}))
        except ClusterLookupError as exc:
            raise StackUnavailable(str(exc)) from exc

    @_permanent_failures_refused
    def correct_drift(self, tenant: TenantRef, on_event: EventSink, *, origin: ChangeOrigin) -> ProvisionResult:
        from automation.operations import DRIFT_CORRECTION_REASON
        from automation.tenants import stack_name_for

        stack = stack_name_for(tenant.slug, tenant.placement)
        reason = f"{DRIFT_CORRECTION_REASON}: {origin.reason}" if origin.reason else DRIFT_CORRECTION_REASON
        result = self._ops.correct_drift(stack, _metadata(reason, origin, kind="drift-correction"),
                                         on_event=_relay(on_event))
        return ProvisionResult(stack=result.stack, summary=dict(result.resource_changes))

    @_permanent_failures_refused
    def destroy(self, tenant: TenantRef, on_event: EventSink, *, origin: ChangeOrigin) -> str | None:
        from automation.tenants import stack_name_for

        stack = stack_name_for(tenant.slug, tenant.placement)
        if stack not in self._ops.stack_names():
            # Removed by an earlier attempt, which may have stopped before destroying the key.
            return self._ops.shred(stack)
        return self._ops.destroy(
            stack, _metadata(f"delete tenant {tenant.slug}", origin), on_event=_relay(on_event),
        ).shredded_key

    def check_drift(self) -> dict[str, Any]:
        from automation.drift import run_drift

        return run_drift(self._ops, self._ops.stack_names()).to_dict()

    def history(self, tenant: TenantRef) -> list[StackUpdate]:
        """Read from the state backend: the API process, which serves it, never runs the engine."""
        from automation.tenants import stack_name_for

        stack = stack_name_for(tenant.slug, tenant.placement)
        return [
            StackUpdate(
                stack=stack, kind=entry.kind, result=entry.result, started_at=entry.started_at,
                ended_at=entry.ended_at, message=entry.message, resource_changes=dict(entry.resource_changes),
                version=entry.version, operation_id=entry.operation_id,
            )
            for entry in self._ops.recorded_history(stack)
        ]


def _metadata(reason: str, origin: ChangeOrigin | None, kind: str = "control-plane") -> UpdateMetadata:
    """Who and why, as the update records them: the control plane, for the operation `origin`."""
    from automation.history import UpdateMetadata

    return UpdateMetadata(ACTOR, reason, operation_id=str(origin.operation_id) if origin else None, kind=kind)


def _spec(tenant: TenantRef, tier: str, environments: Sequence[str], license_jwt: str, suspended: bool,
          database_passwords: Mapping[str, str] | None = None) -> TenantSpec:
    from automation.tenants import TenantSpec

    return TenantSpec(
        slug=tenant.slug, placement=tenant.placement, tier=tier,
        environments=tuple(environments), license_jwt=license_jwt, suspended=suspended,
        database_passwords=dict(database_passwords or {}),
    )


def _relay(sink: EventSink):
    def relay(event: OperationEvent) -> None:
        sink(StackEventData(type=event.type, payload=event.to_dict()))

    return relay

