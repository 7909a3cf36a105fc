"""What operations need from the automation layer.

``automation/`` implements the engine side; ``api.stacks.automation_adapter`` maps this
Protocol onto it. Every method must be idempotent: a retried step calls it again. Every
method that changes a stack is given the operation it works for (``ChangeOrigin``), which the
engine records with each update.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class TenantRef:
    id: uuid.UUID
    slug: str
    placement: str


@dataclass(frozen=True)
class ChangeOrigin:
    """The operation a stack change is made for. Its id goes into the engine update's history,
    so that an update leads back to the operation and to who requested it."""

    operation_id: uuid.UUID
    reason: str | None = None  # the requester's own words, when the operation took some


@dataclass(frozen=True)
class MoveSource:
    """Where a moving tenant's new stack takes over from: the old stack's operator settings
    (plain `cameleer:` keys the control plane does not write) and the database passwords its
    servers use (environment -> password) go along."""

    placement: str
    database_passwords: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class StackEventData:
    """One engine event (resource pre/outcome, diagnostic, summary) for progress display."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[StackEventData], None]


@dataclass(frozen=True)
class ProvisionResult:
    stack: str
    outputs: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviewResult:
    stack: str
    changes: dict[str, Any] = field(default_factory=dict)
    policy_violations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str = ""


@dataclass(frozen=True)
class StackUpdate:
    """One entry of a stack's history (``pulumi stack history``)."""

    stack: str
    kind: str
    result: str
    started_at: datetime
    ended_at: datetime | None = None
    message: str = ""
    resource_changes: dict[str, int] = field(default_factory=dict)
    version: int | None = None  # the stack's update number, 1 = its first
    operation_id: str | None = None  # the operation the update names (any text: a hand-made one may name anything)


class StackUnavailable(Exception):
    """The automation layer cannot be used (not installed, misconfigured)."""


class StackChangeRefused(Exception):
    """The engine refused the change or could not complete it, and trying again cannot help:
    a mandatory policy, invalid config, a rollout that cannot finish. The message says why
    (a policy's own words included). Failures a retry can fix (a locked stack, the network)
    are raised as they are, for the job queue to retry."""


class ClusterNotReady(Exception):
    """The tenant's cluster cannot take it yet (no baseline); the step is retried later."""


class StackDriver(Protocol):
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
        """Create or update the tenant's stack to this desired state (``pulumi up``); on a
        move, taking over from ``moving_from``."""
        ...

    def preview(
        self, tenant: TenantRef, tier: str, environments: Sequence[str], license_jwt: str, on_event: EventSink
    ) -> PreviewResult:
        """What ``provision`` would change, without changing anything."""
        ...

    def readiness(self, tenant: TenantRef) -> Readiness: ...

    def destroy(self, tenant: TenantRef, on_event: EventSink, *, origin: ChangeOrigin) -> str | None:
        """Destroy the tenant's resources, remove the stack, then destroy the stack's own
        encryption key; a missing stack is success. Returns the name of the key destroyed
        (None when the stack had none, or it was destroyed before)."""
        ...

    def correct_drift(self, tenant: TenantRef, on_event: EventSink, *, origin: ChangeOrigin) -> ProvisionResult:
        """Put the cluster back to the tenant's stack (an update with refresh, recorded with
        the reason "drift correction" and the origin's reason); the stack's config is left as it is."""
        ...

    def database_credentials(self, tenant: TenantRef, environments: Sequence[str]) -> dict[str, dict[str, str]]:
        """Each environment's database credentials as its stack delivered them to the
        tenant's server (the Kubernetes Secret), for the tenant's KV paths."""
        ...

    def history(self, tenant: TenantRef) -> list[StackUpdate]: ...

    def check_drift(self) -> dict[str, Any]:
        """Every stack compared with its cluster, changing nothing: the drift job's report
        (schema cameleer.drift/v1, automation/SCHEMA.md), secret values redacted."""
        ...
