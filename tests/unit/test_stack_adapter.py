"""How the control plane's adapter (api.stacks.automation_adapter) passes on the automation
layer's classified failures: those no retry can fix end the step at once as
StackChangeRefused with the reason; the others (retryable or unclassified) go on to the job
queue. The engine itself is replaced by operations that fail as told; the engine tests run
the real one."""

from __future__ import annotations

import uuid

import pytest

from api.stacks.automation_adapter import AutomationStackDriver
from api.stacks.driver import StackChangeRefused, TenantRef
from automation.errors import ErrorKind, OperationError
from automation.events import PolicyViolation
from automation.tenants import stack_name_for

TENANT = TenantRef(id=uuid.uuid4(), slug="acme", placement="dedicated:acme")
MAX_REPLICAS = PolicyViolation("cameleer", "1.0.0", "max-replicas", "mandatory", "replicas must be at most 5")
TEAM_LABEL = PolicyViolation("cameleer", "1.0.0", "team-label", "advisory", "namespaces should carry a team label")


class FailingOperations:
    """`automation.operations.StackOperations` whose every engine operation raises `error`."""

    def __init__(self, error: OperationError) -> None:
        self.error = error

    def stack_names(self) -> list[str]:
        return [stack_name_for(TENANT.slug, TENANT.placement)]

    def fail(self, *args, **kwargs):
        raise self.error

    up = preview = correct_drift = destroy = fail


def driver_failing_with(error: OperationError) -> AutomationStackDriver:
    driver = AutomationStackDriver()
    driver.__dict__["_ops"] = FailingOperations(error)  # in place of the cached StackOperations
    return driver


@pytest.fixture(autouse=True)
def tenant_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMELEER_TENANT_DATABASE_ENDPOINT", "db.example:5432")
    monkeypatch.setenv("CAMELEER_TENANT_DATABASE_ADMIN_URL", "postgresql://admin:pw@db.example:5432/postgres")


ENGINE_CALLS = {
    "provision": lambda driver: driver.provision(TENANT, "high", ["prod"], "jwt", False, print),
    "preview": lambda driver: driver.preview(TENANT, "high", ["prod"], "jwt", print),
    "correct_drift": lambda driver: driver.correct_drift(TENANT, print),
    "destroy": lambda driver: driver.destroy(TENANT, print),
}


@pytest.mark.parametrize("call", ENGINE_CALLS.values(), ids=ENGINE_CALLS.keys())
@pytest.mark.parametrize("kind", [ErrorKind.POLICY, ErrorKind.CONFIG, ErrorKind.ROLLOUT, ErrorKind.NOT_FOUND])
def test_a_failure_no_retry_can_fix_is_refused_with_its_reason(call, kind):
    error = OperationError(kind, "what went wrong", stack="dedicated-acme", operation="update")
    with pytest.raises(StackChangeRefused, match=r"\[%s\] update dedicated-acme: what went wrong" % kind.value):
        call(driver_failing_with(error))


@pytest.mark.parametrize("call", ENGINE_CALLS.values(), ids=ENGINE_CALLS.keys())
@pytest.mark.parametrize("kind", [ErrorKind.CONFLICT, ErrorKind.TRANSIENT, ErrorKind.UNKNOWN])
def test_a_retryable_or_unclassified_failure_goes_on_to_the_job_queue_as_it_is(call, kind):
    error = OperationError(kind, "try again later", stack="dedicated-acme", operation="update")
    with pytest.raises(OperationError) as raised:
        call(driver_failing_with(error))
    assert raised.value is error


def test_a_policy_refusal_says_what_each_mandatory_policy_says():
    error = OperationError(ErrorKind.POLICY, "1 mandatory policy violation(s): max-replicas",
                           stack="dedicated-acme", operation="update", policy_violations=[TEAM_LABEL, MAX_REPLICAS])
    with pytest.raises(StackChangeRefused) as raised:
        ENGINE_CALLS["provision"](driver_failing_with(error))
    assert str(raised.value) == ("[policy] update dedicated-acme: 1 mandatory policy violation(s): max-replicas; "
                                 "max-replicas: replicas must be at most 5")


class RecordingOperations:
    """`StackOperations` that records the stacks it is asked to bring up, and succeeds."""

    def __init__(self) -> None:
        self.updated: list[str] = []

    def up(self, stack: str, *args, **kwargs):
        from types import SimpleNamespace

        self.updated.append(stack)
        return SimpleNamespace(stack=stack, resource_changes={"same": 1})


@pytest.mark.parametrize(("missing", "updated"), [
    (True, ["shared-eu3", "tenant-acme"]), (False, ["tenant-acme"])])
def test_the_first_tenant_on_a_shared_cluster_without_its_baseline_brings_it_up(monkeypatch, missing, updated):
    from api.stacks.automation_adapter import BaselineMissing

    driver, operations = AutomationStackDriver(), RecordingOperations()
    driver.__dict__["_ops"] = operations

    def require_baseline(placement: str, tier: str) -> None:
        if missing and "shared-eu3" not in operations.updated:
            raise BaselineMissing("cluster eu3 has no baseline yet")

    monkeypatch.setattr(driver, "_require_baseline", require_baseline)
    shared = TenantRef(id=uuid.uuid4(), slug="acme", placement="shared:eu3")
    driver.provision(shared, "low", ["prod"], "jwt", False, print)
    assert operations.updated == updated
