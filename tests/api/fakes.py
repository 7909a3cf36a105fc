"""Test doubles for FAST tests only.

``FakeStackDriver`` stands in for the automation layer so the control-plane flow can be
tested in seconds. It is not a substitute for the engine tests (real Pulumi engine,
real cluster), which exercise ``api.stacks.automation_adapter`` and come with the
automation layer.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from api.stacks.driver import (
    ChangeOrigin,
    EventSink,
    PreviewResult,
    ProvisionResult,
    Readiness,
    StackEventData,
    StackUpdate,
    TenantRef,
)


class InjectedFailure(RuntimeError):
    pass


@dataclass
class FakeStackDriver:
    """Remembers the desired state per tenant, like an idempotent ``pulumi up`` would."""

    fail_times: Counter = field(default_factory=Counter)  # method name -> failures left
    fail_with: dict[str, Exception] = field(default_factory=dict)  # method name -> what it raises then
    calls: list[tuple[str, uuid.UUID, str]] = field(default_factory=list)
    origins: list[tuple[str, ChangeOrigin]] = field(default_factory=list)  # method -> the operation it changed for
    updates: dict[tuple[uuid.UUID, str], list[StackUpdate]] = field(default_factory=dict)  # newest first
    stacks: dict[tuple[uuid.UUID, str], dict] = field(default_factory=dict)
    ready: bool = True
    drift_report: dict = field(default_factory=lambda: {"schema": "cameleer.drift/v1", "stacks": [], "summary": {}})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, method: str, tenant: TenantRef) -> None:
        with self._lock:
            self.calls.append((method, tenant.id, tenant.placement))
            if self.fail_times[method] > 0:
                self.fail_times[method] -= 1
                raise self.fail_with.get(method) or InjectedFailure(f"injected failure in {method}")

    def _record(self, method: str, tenant: TenantRef, origin: ChangeOrigin, changes: dict[str, int]) -> None:
        """The stack's history entry, naming the operation as the engine's would."""
        with self._lock:
            self.origins.append((method, origin))
            update = StackUpdate(stack=f"tenant-{tenant.slug}", kind="destroy" if method == "destroy" else "update",
                                 result="succeeded", started_at=datetime.now(UTC), ended_at=datetime.now(UTC),
                                 message=f"fake {method}", resource_changes=changes,
                                 operation_id=str(origin.operation_id))
            self.updates.setdefault((tenant.id, tenant.placement), []).insert(0, update)

    def count(self, method: str, tenant_id: uuid.UUID) -> int:
        return sum(1 for m, t, _ in self.calls if m == method and t == tenant_id)

    def provision(self, tenant: TenantRef, tier: str, environments: Sequence[str], license_jwt: str,
                  suspended: bool, on_event: EventSink, moving_from=None, *, origin: ChangeOrigin) -> ProvisionResult:
        self._enter("provision", tenant)
        on_event(StackEventData("preludeEvent", {"config": {"tier": tier}}))
        for env in environments:
            on_event(StackEventData("resOutputsEvent", {"urn": f"tenant-{tenant.slug}-{env}", "op": "create"}))
        self.stacks[(tenant.id, tenant.placement)] = {
            "tier": tier, "environments": list(environments), "license": license_jwt, "suspended": suspended,
            "moving_from": moving_from,
        }
        on_event(StackEventData("summaryEvent", {"resourceChanges": {"create": len(environments)}}))
        self._record("provision", tenant, origin, {"create": len(environments)})
        return ProvisionResult(stack=f"tenant-{tenant.slug}", summary={"create": len(environments)})

    def preview(self, tenant: TenantRef, tier: str, environments: Sequence[str], license_jwt: str,
                on_event: EventSink) -> PreviewResult:
        self._enter("preview", tenant)
        return PreviewResult(stack=f"tenant-{tenant.slug}", changes={"create": len(environments)})

    def readiness(self, tenant: TenantRef) -> Readiness:
        self._enter("readiness", tenant)
        return Readiness(ready=self.ready, detail="ready" if self.ready else "server not ready")

    def destroy(self, tenant: TenantRef, on_event: EventSink, *, origin: ChangeOrigin) -> str | None:
        self._enter("destroy", tenant)
        self.stacks.pop((tenant.id, tenant.placement), None)
        on_event(StackEventData("summaryEvent", {"resourceChanges": {"delete": 1}}))
        self._record("destroy", tenant, origin, {"delete": 1})
        return None  # no encryption key of its own

    def correct_drift(self, tenant: TenantRef, on_event: EventSink, *, origin: ChangeOrigin) -> ProvisionResult:
        self._enter("correct_drift", tenant)
        on_event(StackEventData("summaryEvent", {"resourceChanges": {"update": 1}}))
        self._record("correct_drift", tenant, origin, {"update": 1})
        return ProvisionResult(stack=f"tenant-{tenant.slug}", summary={"update": 1})

    def database_credentials(self, tenant: TenantRef, environments: Sequence[str]) -> dict[str, dict[str, str]]:
        self._enter("database_credentials", tenant)
        return {env: {"username": f"tenant_{tenant.slug}_{env}".replace("-", "_"),
                      "password": f"fake-password-{tenant.id.hex[:8]}-{env}"} for env in environments}

    def history(self, tenant: TenantRef) -> list[StackUpdate]:
        self._enter("history", tenant)
        with self._lock:
            return list(self.updates.get((tenant.id, tenant.placement), []))

    def check_drift(self) -> dict:
        """The report a test put in ``drift_report``, as the drift job would write it."""
        with self._lock:
            self.calls.append(("check_drift", uuid.UUID(int=0), ""))
        return self.drift_report


class BlockingStackDriver(FakeStackDriver):
    """For the worker-kill test: ``provision`` hangs, so the worker can be killed mid-step."""

    def provision(self, *args, **kwargs):
        import time

        time.sleep(600)
        raise AssertionError("the test should have killed this worker")
