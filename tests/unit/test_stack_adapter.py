"""How the control plane's adapter (api.stacks.automation_adapter) passes on the automation
layer's classified failures: those no retry can fix end the step at once as
StackChangeRefused with the reason; the others (retryable or unclassified) go on to the job
queue. The engine itself is replaced by operations that fail as told; the engine tests run
the real one."""

from __future__ import annotations

import uuid

import pytest

from api.stacks.automation_adapter import AutomationStackDriver
from api.stacks.driver import ChangeOrigin, StackChangeRefused, TenantRef
from automation.errors import ErrorKind, OperationError
from automation.events import PolicyViolation
from automation.history import UpdateMetadata, parse_history
from automation.tenants import stack_name_for

TENANT = TenantRef(id=uuid.uuid4(), slug="acme", placement="dedicated:acme")
OPERATION = ChangeOrigin(operation_id=uuid.uuid4())
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
    monkeypatch.setenv("CAMELEER_TENANT_SECRETS_ADDRESS", "http://openbao.example:8200")
    monkeypatch.setenv("CAMELEER_TENANT_CONTROL_PLANE_URL", "https://cp.example.com")


ENGINE_CALLS = {
    "provision": lambda driver: driver.provision(TENANT, "high", ["prod"], "jwt", False, print, origin=OPERATION),
    "preview": lambda driver: driver.preview(TENANT, "high", ["prod"], "jwt", print),
    "correct_drift": lambda driver: driver.correct_drift(TENANT, print, origin=OPERATION),
    "destroy": lambda driver: driver.destroy(TENANT, print, origin=OPERATION),
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


@pytest.mark.parametrize("call", [ENGINE_CALLS["provision"], ENGINE_CALLS["preview"]], ids=["provision", "preview"])
def test_a_platform_that_has_not_said_where_openbao_is_gets_a_refusal_saying_so_and_no_update(monkeypatch, call):
    monkeypatch.delenv("CAMELEER_TENANT_SECRETS_ADDRESS")
    # The engine, if it were asked, would fail with an error passed on as it is.
    not_to_be_called = driver_failing_with(OperationError(ErrorKind.UNKNOWN, "the engine was asked"))
    with pytest.raises(StackChangeRefused, match="CAMELEER_TENANT_SECRETS_ADDRESS must be set"):
        call(not_to_be_called)


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
    driver.provision(shared, "low", ["prod"], "jwt", False, print, origin=OPERATION)
    assert operations.updated == updated


class MetadataRecordingOperations:
    """`StackOperations` that keep the who/why each engine update would write into the stack's
    history (`UpdateMetadata`), and succeed; its recorded history is what those updates wrote."""

    def __init__(self) -> None:
        self.written: list[tuple[str, UpdateMetadata]] = []

    def stack_names(self) -> list[str]:
        return [stack_name_for(TENANT.slug, TENANT.placement)]

    def _record(self, stack: str, metadata: UpdateMetadata | None = None, **kwargs):
        from types import SimpleNamespace

        self.written.append((stack, metadata))
        return SimpleNamespace(stack=stack, resource_changes={"same": 1}, shredded_key=None)

    up = correct_drift = destroy = _record

    def recorded_history(self, stack: str):
        return parse_history([{"kind": "update", "result": "succeeded", "message": metadata.message(),
                               "environment": {"ci.system": "cameleer"}}
                              for written_to, metadata in reversed(self.written) if written_to == stack])


def recording_driver() -> tuple[AutomationStackDriver, MetadataRecordingOperations]:
    driver, operations = AutomationStackDriver(), MetadataRecordingOperations()
    driver.__dict__["_ops"] = operations
    return driver, operations


UPDATES_OF_AN_OPERATION = {
    "provision": lambda driver, origin: driver.provision(TENANT, "high", ["prod"], "jwt", False, print, origin=origin),
    "correct_drift": lambda driver, origin: driver.correct_drift(TENANT, print, origin=origin),
    "destroy": lambda driver, origin: driver.destroy(TENANT, print, origin=origin),
}


@pytest.mark.parametrize("call", UPDATES_OF_AN_OPERATION.values(), ids=UPDATES_OF_AN_OPERATION.keys())
def test_each_engine_update_of_an_operation_names_that_operation_not_its_tenant(call):
    driver, operations = recording_driver()
    call(driver, OPERATION)
    [(stack, metadata)] = operations.written
    assert stack == stack_name_for(TENANT.slug, TENANT.placement)
    assert metadata.operation_id == str(OPERATION.operation_id)
    assert f"op={OPERATION.operation_id}" in metadata.message() and str(TENANT.id) not in metadata.message()
    assert metadata.env_vars()["PULUMI_CI_BUILD_ID"] == str(OPERATION.operation_id)
    assert metadata.actor == "control-plane"


def test_a_baseline_brought_up_for_a_tenants_operation_names_the_operation(monkeypatch):
    from api.stacks.automation_adapter import BaselineMissing

    driver, operations = recording_driver()

    def require_baseline(placement: str, tier: str) -> None:
        if not any(stack == "shared-eu3" for stack, _ in operations.written):
            raise BaselineMissing("cluster eu3 has no baseline yet")

    monkeypatch.setattr(driver, "_require_baseline", require_baseline)
    shared = TenantRef(id=uuid.uuid4(), slug="acme", placement="shared:eu3")
    driver.provision(shared, "low", ["prod"], "jwt", False, print, origin=OPERATION)
    assert [(stack, metadata.operation_id) for stack, metadata in operations.written] == [
        ("shared-eu3", str(OPERATION.operation_id)), ("tenant-acme", str(OPERATION.operation_id))]


def test_a_drift_correction_records_the_reason_its_requester_gave():
    driver, operations = recording_driver()
    reason = "replicas scaled by hand during incident 42"
    driver.correct_drift(TENANT, print, origin=ChangeOrigin(uuid.uuid4(), reason=reason))
    driver.correct_drift(TENANT, print, origin=ChangeOrigin(uuid.uuid4()))  # the watcher's: no words of its own
    [(_, asked), (_, automatic)] = operations.written
    assert asked.reason == f"drift correction: {reason}" and asked.message().endswith(f"why=drift correction: {reason}")
    assert automatic.reason == "drift correction"
    assert asked.kind == automatic.kind == "drift-correction"


def test_the_history_served_names_the_operation_of_each_update():
    driver, _ = recording_driver()
    first, second = ChangeOrigin(uuid.uuid4()), ChangeOrigin(uuid.uuid4(), reason="put it back")
    driver.provision(TENANT, "high", ["prod"], "jwt", False, print, origin=first)
    driver.correct_drift(TENANT, print, origin=second)
    assert [u.operation_id for u in driver.history(TENANT)] == [str(second.operation_id), str(first.operation_id)]
