"""The engine operations the control plane and the CLI run on stacks.

    ops = StackOperations()                        # settings from the environment
    who = UpdateMetadata(actor="signup-worker", reason="signup", operation_id=op_id)
    ops.provision("tenant-acme", {"slug": "acme", "tier": "low", ...}, who)
    ops.preview("dedicated-acme", config={"image": "..."})   # nothing persisted
    ops.check_drift("tenant-acme")                 # DriftReport; never applies anything
    ops.correct_drift("tenant-acme", who)          # up --refresh, reason recorded
    ops.history("tenant-acme", limit=10)

Each operation:
* runs the project's own program (local program, repo root) in its own `pulumi` process;
* holds this process's gate: at most N engine processes at once, one per stack;
* holds the stack's lease, when a lease store is configured (leases.py): one live operation
  per stack across processes and hosts, renewed while it runs; an expired lease of a dead
  holder is taken over, and what is left of its engine processes ended;
* carries who/why (`UpdateMetadata`) into the stack's history when it changes anything;
* runs the CrossGuard pack(s) on every preview and update;
* streams `OperationEvent`s to `on_event`;
* recovers a stack left locked by a dead process (see recovery.py), once, and reports it;
* retries transient failures with backoff and raises a classified `OperationError`
  for everything else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pulumi.automation import Deployment, Stack

from stacks.clusters import DEFAULT_LOCAL_CLUSTER, kubeconfig_content

from . import engine
from .changes import ResourceChange, changes_from_events
from .checkpoints import CheckpointReader
from .errors import ErrorKind, OperationError, RetryPolicy, classify
from .events import EventCapture, OnEvent, OperationEvent, PolicyViolation
from .history import HistoryEntry, UpdateMetadata, parse_history, parse_time
from .history_reader import HistoryReader
from .leases import HeldLease, HolderIdentity, Lease, LeaseHeld, LeaseStore, PostgresLeases, end_processes
from .locks import BackendLocks, OperationGate, backend_locks_for
from .precheck import PrecheckRun, run_precheck
from .naming import StackKind, is_stack_name, parse_stack_name, resolve_target
from .readiness import api_client, explain_rollout_failure
from .recovery import RecoveryReport, recover
from .settings import Settings, SettingsError, require_policy_pack
from .tenants import TenantSpecError, tenant_database_admin_url
from .workspace import SecretsProvider, WorkspaceFactory, config_json, qualify_key

log = logging.getLogger(__name__)
T = TypeVar("T")

DRIFT_CORRECTION_REASON = "drift correction"


# --------------------------------------------------------------------------- results

@dataclass
class OperationResult:
    stack: str
    operation: str  # preview | update | refresh | destroy | drift-check | import
    started_at: datetime
    finished_at: datetime
    resource_changes: dict[str, int] = field(default_factory=dict)
    changes: list[ResourceChange] = field(default_factory=list)
    policy_violations: list[PolicyViolation] = field(default_factory=list)
    policy_packs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    recovery: RecoveryReport | None = None
    attempts: int = 1
    shredded_key: str | None = None  # destroy: the stack's own encryption key, destroyed with it
    events: list[OperationEvent] = field(default_factory=list, repr=False)

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def changed(self) -> list[ResourceChange]:
        return [c for c in self.changes if c.changed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "operation": self.operation,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_seconds": round(self.duration_seconds, 3),
            "resource_changes": self.resource_changes,
            "changes": [c.to_dict() for c in self.changes],
            "policy": {
                "packs": self.policy_packs,
                "violations": [v.to_dict() for v in self.policy_violations],
            },
            "recovery": self.recovery.to_dict() if self.recovery else None,
            "attempts": self.attempts,
            "encryption_key_destroyed": self.shredded_key,
        }


@dataclass
class DriftReport:
    stack: str
    checked_at: datetime
    duration_seconds: float
    resources: list[ResourceChange]  # only the drifted ones
    resource_count: int
    recovery: RecoveryReport | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.resources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "checked_at": _iso(self.checked_at),
            "duration_seconds": round(self.duration_seconds, 3),
            "drifted": self.drifted,
            "resource_count": self.resource_count,
            "resources": [r.to_dict() for r in self.resources],
            "recovery": self.recovery.to_dict() if self.recovery else None,
        }


@dataclass(frozen=True)
class StackInfo:
    name: str
    kind: str | None
    slug: str | None
    tier: str | None
    last_update: datetime | None
    update_in_progress: bool
    resource_count: int | None
    last_result: str | None = None
    last_kind: str | None = None
    last_actor: str | None = None
    last_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "slug": self.slug,
            "tier": self.tier,
            "last_update": _iso(self.last_update),
            "update_in_progress": self.update_in_progress,
            "resource_count": self.resource_count,
            "last_result": self.last_result,
            "last_kind": self.last_kind,
            "last_actor": self.last_actor,
            "last_reason": self.last_reason,
        }


# --------------------------------------------------------------------------- operations

class StackOperations:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        secrets: SecretsProvider | None = None,
        gate: OperationGate | None = None,
        retry: RetryPolicy | None = None,
        recover_stale_locks: bool = True,
        leases: LeaseStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.factory = WorkspaceFactory(self.settings, secrets)
        if leases is None and self.settings.lease_database_url:
            leases = PostgresLeases(self.settings.lease_database_url)
        self.leases = leases
        self.gate = gate or OperationGate(self.settings.max_concurrent_operations)
        self.retry = retry or RetryPolicy()
        self.recover_stale_locks = recover_stale_locks
        self._sleep = sleep

    # -- discovery -----------------------------------------------------------------

    def stack_names(self) -> list[str]:
        """Stacks in the backend (not only those with a config file), sorted."""
        result = self.factory.run_cli(["stack", "ls", "--json"])
        return sorted(item["name"].rsplit("/", 1)[-1] for item in json.loads(result.stdout or "[]"))

    def resolve(self, target: str) -> str:
        """A stack name, or a tenant slug resolved to its stack (see naming.resolve_target)."""
        if is_stack_name(target):
            return parse_stack_name(target).name
        return resolve_target(target, set(self.stack_names()) | set(self.factory.configured_stacks()))

    def list_stacks(self, *, with_last_result: bool = True, parallel: int = 4) -> list[StackInfo]:
        """Every stack in the backend with its kind, tier and last update."""
        result = self.factory.run_cli(["stack", "ls", "--json"])
        raw = sorted(json.loads(result.stdout or "[]"), key=lambda item: item["name"])

        def info(item: Mapping[str, Any]) -> StackInfo:
            name = item["name"].rsplit("/", 1)[-1]
            try:
                ref = parse_stack_name(name)
                kind, slug = ref.kind.value, ref.slug
            except OperationError:
                kind = slug = None
            tier = self.factory.read_stack_config(name).get(qualify_key("tier"))
            last = None
            if with_last_result and item.get("lastUpdate"):
                entries = self.history(name, limit=1)
                last = entries[0] if entries else None
            return StackInfo(
                name=name, kind=kind, slug=slug, tier=str(tier) if tier is not None else None,
                last_update=parse_time(item.get("lastUpdate")),
                update_in_progress=bool(item.get("updateInProgress", False)),
                resource_count=item.get("resourceCount"),
                last_result=last.result if last else None,
                last_kind=last.kind if last else None,
                last_actor=last.actor if last else None,
                last_reason=last.reason if last else None,
            )

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            return list(pool.map(info, raw))

    def precheck(self, stacks: list[str] | None = None) -> PrecheckRun:
        """The drift pre-check (precheck.py) over `stacks` (default: all), no engine started."""
        checkpoints = CheckpointReader(self.settings.backend_url, self.factory.project_name).read(stacks)
        environ = {**os.environ, **self.factory.env_vars()}
        try:
            admin_url = tenant_database_admin_url(environ)
        except (TenantSpecError, OperationError) as exc:
            log.warning("drift pre-check without the tenant database: %s", exc)
            admin_url = None
        return run_precheck(checkpoints, database_admin_url=admin_url, environ=environ)

    # -- read-only operations -------------------------------------------------------

    def preview(
        self,
        stack_name: str,
        *,
        config: Mapping[str, Any] | None = None,
        on_event: OnEvent | None = None,
    ) -> OperationResult:
        """What an update would do, with `config` overrides applied to a throwaway copy
        of the stack's config (nothing is persisted), and the policy packs' verdicts."""
        packs = self._policy_packs()

        def body(stack: Stack, capture: EventCapture) -> OperationResult:
            started = _now()
            with self._config_overlay(stack_name, config) as overlay:
                config_file = overlay or str(self.factory.config_file(stack_name))
                preview = stack.preview(
                    on_event=capture, policy_packs=packs, diff=False, color="never",
                    config_file=config_file,
                )
            return self._result(stack_name, "preview", started, capture,
                                resource_changes=_ops(preview.change_summary))

        # A preview never creates a stack: `stack init` rewrites the stack's settings file
        # (encryption salt), and a preview writes nothing. A new stack is created by `up`.
        return self._run(stack_name, "preview", body, on_event=on_event)

    def check_drift(self, stack_name: str, *, on_event: OnEvent | None = None) -> DriftReport:
        """Compare the live cluster with the stack's state (`refresh --preview-only`).

        Never changes the state or the cluster.
        """
        def body(stack: Stack, capture: EventCapture) -> DriftReport:
            started = _now()
            stack.preview_refresh(on_event=capture, color="never",
                                  config_file=str(self.factory.config_file(stack_name)))
            changes = changes_from_events(capture.engine_events, mode="refresh")
            return DriftReport(
                stack=stack_name, checked_at=started,
                duration_seconds=(_now() - started).total_seconds(),
                resources=[c for c in changes if c.changed],
                resource_count=len(changes),
            )

        return self._run(stack_name, "drift-check", body, on_event=on_event)

    def history(self, stack_name: str, *, limit: int | None = None) -> list[HistoryEntry]:
        """The stack's updates, newest first, with who/why parsed back."""
        # The whole history is read (DIY backends number versions only that way, see
        # history.parse_history); it is small: one entry per update, not per drift check.
        try:
            result = self.factory.run_cli(["stack", "history", "--json"], stack=stack_name)
        except Exception as exc:  # noqa: BLE001 - classified below
            raise classify(exc, stack=stack_name, operation="history") from exc
        entries = parse_history(json.loads(result.stdout or "[]"))
        return entries[:limit] if limit else entries

    def recorded_history(self, stack_name: str, *, limit: int | None = None) -> list[HistoryEntry]:
        """What `history` returns, read from the backend without starting the engine (a
        process that must not run it, the API, reads this); none for an unknown stack."""
        return HistoryReader(self.settings.backend_url, self.factory.project_name).read(stack_name, limit=limit)

    def export_state(self, stack_name: str) -> dict[str, Any]:
        def body(stack: Stack, capture: EventCapture) -> dict[str, Any]:
            deployment = stack.export_stack()
            return {"version": deployment.version, "deployment": deployment.deployment}

        return self._run(stack_name, "export", body, recover_locks=False)

    # -- changing operations ----------------------------------------------------------

    def provision(
        self,
        stack_name: str,
        config: Mapping[str, Any],
        metadata: UpdateMetadata,
        *,
        on_event: OnEvent | None = None,
    ) -> OperationResult:
        """Create the stack if needed, write its config, and bring it up (with outputs)."""
        parse_stack_name(stack_name)
        return self.up(stack_name, metadata, config=config, create=True, with_outputs=True, on_event=on_event)

    def up(
        self,
        stack_name: str,
        metadata: UpdateMetadata,
        *,
        config: Mapping[str, Any] | None = None,
        create: bool = False,
        in_repository: bool = False,
        refresh: bool = False,
        with_outputs: bool = False,
        on_event: OnEvent | None = None,
    ) -> OperationResult:
        """Update the stack (config, when given, is written to its settings file first).

        `create` creates a missing stack, with its settings file in the service's config
        dir, or with `in_repository` in the repository's (an operator's committed stack).
        `with_outputs` also reads the stack's outputs afterwards (two more CLI processes)."""
        packs = self._policy_packs()
        operation = "update"

        def body(stack: Stack, capture: EventCapture) -> OperationResult:
            started = _now()
            config_file = str(self.factory.config_file(stack_name))
            if config:
                self.factory.run_cli(["config", "set-all", "--config-file", config_file,
                                      "--json", config_json(config)], stack=stack_name)
            engine.update(stack, message=metadata.message(), policy_packs=packs, refresh=refresh,
                          on_event=capture, config_file=config_file)
            return self._result(stack_name, operation, started, capture,
                                outputs=engine.outputs(stack) if with_outputs else None)

        return self._run(stack_name, operation, body, on_event=on_event, metadata=metadata, create=create,
                         in_repository=in_repository)

    def correct_drift(self, stack_name: str, metadata: UpdateMetadata | None = None, *,
                      on_event: OnEvent | None = None) -> OperationResult:
        """Put the cluster back to what the stack says: an update with refresh, recorded
        with the reason "drift correction"."""
        metadata = metadata or UpdateMetadata(self.settings.actor, DRIFT_CORRECTION_REASON,
                                              kind="drift-correction")
        return self.up(stack_name, metadata, refresh=True, on_event=on_event)

    def refresh(self, stack_name: str, metadata: UpdateMetadata, *,
                on_event: OnEvent | None = None) -> OperationResult:
        """Adopt the live state into the stack's state (changes nothing in the cluster)."""
        def body(stack: Stack, capture: EventCapture) -> OperationResult:
            started = _now()
            engine.refresh(stack, message=metadata.message(), on_event=capture,
                           config_file=str(self.factory.config_file(stack_name)))
            return self._result(stack_name, "refresh", started, capture, diff_mode="refresh")

        return self._run(stack_name, "refresh", body, on_event=on_event, metadata=metadata)

    def destroy(self, stack_name: str, metadata: UpdateMetadata, *, remove: bool = True,
                on_event: OnEvent | None = None) -> OperationResult:
        """Delete every resource of the stack; then remove the stack (and its config file) and
        destroy its encryption key.

        A key that cannot be destroyed (the secrets server is sealed) fails the call after the
        stack is gone, outside the engine's retries: a retry of the whole destroy would find
        no stack. `shred` finishes the job later, as a retried delete does."""
        key_failures: list[OperationError] = []

        def body(stack: Stack, capture: EventCapture) -> OperationResult:
            started = _now()
            engine.destroy(stack, message=metadata.message(), on_event=capture,
                           config_file=str(self.factory.config_file(stack_name)))
            outcome = self._result(stack_name, "destroy", started, capture)
            if remove:
                self.factory.remove_stack_record(stack_name)
                capture.emit("removed", f"stack {stack_name} removed")
                try:
                    outcome.shredded_key = self.factory.secrets.shred(stack_name)
                except Exception as exc:  # noqa: BLE001 - classified, raised once the run is over
                    key_failures.append(classify(exc, stack=stack_name, operation="destroy"))
                    capture.emit("shred-failed", f"stack {stack_name} removed, but its encryption key is "
                                 f"not destroyed yet: {key_failures[0].message}", severity="warning")
                if outcome.shredded_key:
                    capture.emit("shredded", f"encryption key {outcome.shredded_key} destroyed: no copy of "
                                 "the stack's state can be decrypted any more", data={"key": outcome.shredded_key})
            return outcome

        outcome = self._run(stack_name, "destroy", body, on_event=on_event, metadata=metadata)
        if key_failures:
            raise key_failures[0]
        return outcome

    def migrate_secrets(self, stack_name: str) -> str:
        """Move a service stack from the passphrase to its own transit key
        (`pulumi stack change-secrets-provider`); what was done, as a word."""
        target = self.factory.secrets.provider_url(stack_name)
        if target == "passphrase":
            return "kept (passphrase: not a service stack, or no secrets server configured)"
        if self.factory.secrets_provider_in_use(stack_name) == target:
            return "already on its own key"

        def body(stack: Stack, capture: EventCapture) -> str:
            self.factory.change_secrets_provider(stack_name)
            capture.emit("secrets-provider", f"{stack_name} now encrypts with {target}")
            return f"migrated to {target}"

        return self._run(stack_name, "change-secrets-provider", body, recover_locks=False)

    def shred(self, stack_name: str) -> str | None:
        """Destroy a removed stack's encryption key (a delete retried after `stack rm`)."""
        return self.factory.secrets.shred(stack_name)

    def import_state(self, stack_name: str, state: Mapping[str, Any], *,
                     on_event: OnEvent | None = None) -> None:
        """Replace the stack's state with an exported one (`pulumi stack import`)."""
        def body(stack: Stack, capture: EventCapture) -> None:
            stack.import_stack(Deployment(version=state.get("version"), deployment=state.get("deployment")))
            capture.emit("imported", f"state imported into {stack_name}")

        self._run(stack_name, "import", body, on_event=on_event, create=True)

    def recover(self, stack_name: str, metadata: UpdateMetadata | None = None, *,
                on_event: OnEvent | None = None) -> RecoveryReport:
        """Check the stack for stale locks and pending operations and clear them."""
        metadata = metadata or UpdateMetadata(self.settings.actor, "recovery after an interrupted operation",
                                              kind="recovery")

        def body(stack: Stack, capture: EventCapture) -> RecoveryReport:
            return recover(stack, capture, lock_store=self._lock_store(),
                           stale_after_seconds=self.settings.lock_stale_after_seconds,
                           refresh_message=metadata.message(), always_check_state=True,
                           config_file=str(self.factory.config_file(stack_name)),
                           leased=self.factory.leases.holds(stack_name))

        return self._run(stack_name, "recover", body, on_event=on_event, metadata=metadata,
                         recover_locks=False)

    # -- machinery --------------------------------------------------------------------

    def _run(
        self,
        stack_name: str,
        operation: str,
        body: Callable[[Stack, EventCapture], T],
        *,
        on_event: OnEvent | None = None,
        metadata: UpdateMetadata | None = None,
        create: bool = False,
        in_repository: bool = False,
        recover_locks: bool = True,
    ) -> T:
        capture = EventCapture(stack_name, operation, on_event)
        delays: Iterator[float] = iter(self.retry.delays())
        recovery: RecoveryReport | None = None
        attempt = 0
        with self.gate.hold(stack_name, operation), self._leased(stack_name, operation, metadata, capture) as held:
            capture.emit("started", f"{operation} {stack_name}",
                         data={"actor": metadata.actor, "reason": metadata.reason} if metadata else {})
            while True:
                attempt += 1
                stack: Stack | None = None
                try:
                    stack = (self.factory.create_or_select(stack_name, metadata=metadata,
                                                           in_repository=in_repository) if create
                             else self.factory.attach(stack_name, metadata=metadata))
                    result = body(stack, capture)
                    _require_lease(held)
                except Exception as exc:  # noqa: BLE001 - every failure is classified
                    error = classify(exc, stack=stack_name, operation=operation,
                                     policy_violations=capture.policy_violations,
                                     diagnostics=capture.error_diagnostics)
                    if held is not None and held.lost.is_set():
                        # Another worker may own the stack now: no recovery, no retry here.
                        error = _lease_lost(held)
                        capture.emit("finished", str(error), severity="error", data={"error": error.to_dict()})
                        raise error from exc
                    if (error.kind is ErrorKind.CONFLICT and recover_locks and self.recover_stale_locks
                            and recovery is None and stack is not None):
                        try:
                            recovery = self._recover(stack, capture, metadata, error)
                        except OperationError as unrecoverable:
                            error = unrecoverable
                        else:
                            capture.reset_engine_run()
                            continue
                    delay = next(delays, None) if self.retry.should_retry(error) else None
                    if delay is not None:
                        capture.emit("retry", f"attempt {attempt} failed ({error.message}); "
                                     f"retrying in {delay:.0f} s", severity="warning",
                                     data={"attempt": attempt, "error": error.to_dict()})
                        self._sleep(delay)
                        capture.reset_engine_run()
                        continue
                    if operation == "update":
                        error.message = explain_rollout_failure(error.message, lambda: self.cluster_api(stack_name))
                    capture.emit("finished", str(error), severity="error", data={"error": error.to_dict()})
                    raise error from exc
                break
            if isinstance(result, (OperationResult, DriftReport)):
                result.recovery = recovery
                if isinstance(result, OperationResult):
                    result.attempts = attempt
                    result.events = list(capture.events)
            capture.emit("finished", f"{operation} {stack_name} succeeded",
                         data={"attempts": attempt})
            return result

    def _recover(self, stack: Stack, capture: EventCapture, metadata: UpdateMetadata | None,
                 error: OperationError) -> RecoveryReport:
        """The stack is locked: recover if the lock is provably stale, else re-raise CONFLICT."""
        lock_store = self._lock_store()
        if lock_store is None:
            raise error
        why = UpdateMetadata(
            metadata.actor if metadata else self.settings.actor,
            f"recovery after an interrupted operation, before {capture.operation}"
            + (f" ({metadata.reason})" if metadata else ""),
            operation_id=metadata.operation_id if metadata else None,
            kind="recovery",
        )
        try:
            report = recover(stack, capture, lock_store=lock_store,
                             stale_after_seconds=self.settings.lock_stale_after_seconds,
                             refresh_message=why.message(),
                             config_file=str(self.factory.config_file(stack.name)),
                             leased=self.factory.leases.holds(stack.name))
        except OperationError:
            raise  # a live lock (conflict): already classified
        except Exception as exc:  # noqa: BLE001 - a failed recovery is classified like any failure
            raise classify(exc, stack=stack.name, operation="recover") from exc
        if not report.locks_removed:
            # Locked, yet no lock we could see: the engine's word stands.
            raise error
        return report

    @contextmanager
    def _leased(self, stack_name: str, operation: str, metadata: UpdateMetadata | None,
                capture: EventCapture) -> Iterator[HeldLease | None]:
        """The stack's lease for the length of the operation (nothing without a lease store)."""
        if self.leases is None:
            yield None
            return
        held = self._acquire_lease(stack_name, operation, metadata, capture)
        try:
            with self.factory.leases.active(held):
                if held.previous is not None:
                    self._take_over(held.previous, capture)
                yield held
        finally:
            held.release()

    def _acquire_lease(self, stack_name: str, operation: str, metadata: UpdateMetadata | None,
                       capture: EventCapture) -> HeldLease:
        """Acquire the lease; when its holder has missed a heartbeat, wait once for it to expire
        (a dead holder's is then taken over) instead of failing at once."""
        late_after = self.settings.lease_ttl_seconds - 1.5 * self.settings.lease_heartbeat_seconds
        try:
            return self._take_lease(stack_name, operation, metadata)
        except LeaseHeld as held:
            if held.seconds_left > late_after:
                capture.emit("finished", str(held), severity="error", data={"error": held.to_dict()})
                raise
            capture.emit("lease-wait", f"{held.current.describe()} missed its heartbeat; waiting "
                         f"{held.seconds_left:.0f} s for its lease to expire", severity="warning",
                         data=held.current.to_dict())
            self._sleep(held.seconds_left + 0.5)
        try:
            return self._take_lease(stack_name, operation, metadata)
        except LeaseHeld as held:
            capture.emit("finished", str(held), severity="error", data={"error": held.to_dict()})
            raise

    def _take_lease(self, stack_name: str, operation: str, metadata: UpdateMetadata | None) -> HeldLease:
        settings = self.settings
        identity = HolderIdentity(settings.host_name)
        try:
            acquisition = self.leases.acquire(stack_name, identity.new_holder(), identity, operation,
                                              metadata.operation_id if metadata else None, settings.lease_ttl_seconds)
        except LeaseHeld:
            raise
        except Exception as exc:  # noqa: BLE001 - the lease database is unreachable: transient
            raise OperationError(ErrorKind.TRANSIENT, f"cannot reach the stack leases: {type(exc).__name__}",
                                 stack=stack_name, operation=operation, retry_after=10.0) from exc
        return HeldLease(self.leases, acquisition, heartbeat_seconds=settings.lease_heartbeat_seconds,
                         ttl_seconds=settings.lease_ttl_seconds).start()

    def _take_over(self, previous: Lease, capture: EventCapture) -> None:
        """The stack's previous holder stopped beating: end what is left of its engine, if it ran here."""
        ended = end_processes(previous)
        message = f"lease of {previous.describe()} expired; taken over"
        if ended:
            message += f", and {len(ended)} process(es) left of its engine ended (session {previous.session_id})"
        capture.emit("recovery", message, severity="warning", data={**previous.to_dict(), "ended": ended})
        log.warning("%s: %s", previous.stack, message)

    def cluster_api(self, stack_name: str):
        """A Kubernetes client for the cluster the stack's config names."""
        configured = self.factory.read_stack_config(stack_name).get(qualify_key("cluster"))
        name = parse_stack_name(stack_name)
        cluster = name.slug if name.kind is StackKind.SHARED else str(configured or DEFAULT_LOCAL_CLUSTER)
        return api_client(kubeconfig_content(cluster, {**os.environ, **self.factory.env_vars()}))

    def _lock_store(self) -> BackendLocks | None:
        try:
            return backend_locks_for(self.settings.backend_url, self.factory.project_name)
        except OperationError:
            return None

    def _policy_packs(self) -> list[str]:
        if not self.settings.policy_packs:
            log.warning("previews and updates run without any policy pack, as a test asked")
        try:
            return [str(require_policy_pack(pack)) for pack in self.settings.policy_packs]
        except SettingsError as exc:
            raise OperationError(ErrorKind.CONFIG, str(exc)) from exc

    @contextmanager
    def _config_overlay(self, stack_name: str, overrides: Mapping[str, Any] | None) -> Iterator[str | None]:
        """A temporary copy of the stack's settings file with `overrides` applied."""
        if not overrides:
            yield None
            return
        source = self.factory.config_file(stack_name)
        with tempfile.TemporaryDirectory(prefix="cameleer-preview-") as tmp:
            target = Path(tmp) / source.name
            if source.exists():
                shutil.copyfile(source, target)
            else:
                target.write_text("config: {}\n")
            self.factory.run_cli(
                ["config", "set-all", "--config-file", str(target), "--json", config_json(overrides)],
                stack=stack_name,
            )
            yield str(target)

    def _result(self, stack_name: str, operation: str, started: datetime, capture: EventCapture, *,
                resource_changes: dict[str, int] | None = None, outputs: dict[str, Any] | None = None,
                diff_mode: str = "preview") -> OperationResult:
        """The result of one engine run, read from its event stream."""
        summary = capture.summary.data if capture.summary else {}
        return OperationResult(
            stack=stack_name,
            operation=operation,
            started_at=started,
            finished_at=_now(),
            resource_changes=resource_changes or dict(summary.get("resource_changes", {})),
            changes=changes_from_events(capture.engine_events, mode=diff_mode),
            policy_violations=list(capture.policy_violations),
            policy_packs=dict(summary.get("policy_packs", {})),
            outputs=outputs or {},
        )


def _require_lease(held: HeldLease | None) -> None:
    if held is not None and held.lost.is_set():
        raise _lease_lost(held)


def _lease_lost(held: HeldLease) -> OperationError:
    return OperationError(ErrorKind.CONFLICT, "the stack's lease was lost (not renewed in time); another "
                          "worker may have taken the stack over", stack=held.stack, retry_after=30.0)


def _ops(summary: Mapping[Any, int] | None) -> dict[str, int]:
    return {str(getattr(k, "value", k)): int(v) for k, v in (summary or {}).items()}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None
