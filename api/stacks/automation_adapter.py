"""Adapter from :class:`api.stacks.driver.StackDriver` to the automation layer.

``automation`` is imported lazily, on first use, so the API and the fast tests do not
need the engine. HOOK: the automation layer is being written in ``automation/``; the
names used here are the agreed entry points, and this module is the only place to
adapt when they land (see the report of issue 5).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from api.stacks.driver import (
    EventSink,
    PreviewResult,
    ProvisionResult,
    Readiness,
    StackUnavailable,
    StackUpdate,
    TenantRef,
)

ENTRY_MODULE = "automation.tenants"


def _automation() -> ModuleType:
    try:
        return importlib.import_module(ENTRY_MODULE)
    except ImportError as exc:
        raise StackUnavailable(
            f"the automation layer ({ENTRY_MODULE}) is not available: {exc}; "
            "set CAMELEER_STACK_DRIVER to another implementation or install it"
        ) from exc


def _call(name: str, *args, **kwargs):
    module = _automation()
    function = getattr(module, name, None)
    if function is None:
        raise StackUnavailable(f"{ENTRY_MODULE}.{name} does not exist yet")
    return function(*args, **kwargs)


class AutomationStackDriver:
    """Drives tenant stacks through ``automation`` (Pulumi Automation API, local programs)."""

    def provision(
        self,
        tenant: TenantRef,
        tier: str,
        environments: Sequence[str],
        license_jwt: str,
        suspended: bool,
        on_event: EventSink,
    ) -> ProvisionResult:
        return _call(
            "provision_tenant",
            tenant=tenant,
            tier=tier,
            environments=list(environments),
            license_jwt=license_jwt,
            suspended=suspended,
            on_event=on_event,
        )

    def preview(
        self, tenant: TenantRef, tier: str, environments: Sequence[str], license_jwt: str, on_event: EventSink
    ) -> PreviewResult:
        return _call(
            "preview_tenant",
            tenant=tenant,
            tier=tier,
            environments=list(environments),
            license_jwt=license_jwt,
            on_event=on_event,
        )

    def readiness(self, tenant: TenantRef) -> Readiness:
        return _call("tenant_readiness", tenant=tenant)

    def destroy(self, tenant: TenantRef, on_event: EventSink) -> None:
        _call("destroy_tenant", tenant=tenant, on_event=on_event)

    def history(self, tenant: TenantRef) -> list[StackUpdate]:
        return _call("tenant_history", tenant=tenant)
