"""Operations through the real job queue, with the FAST stack-driver double
(``tests.api.fakes.FakeStackDriver``): resume after a crash, failure after the last
retry or at once (a refused change), operator retry, what a failed operation leaves of
its tenant, and the lifecycle (suspend, reactivate, tier change, delete).
The same flows against the real engine belong to the engine tests."""

from __future__ import annotations

import uuid

import hvac.exceptions
import jwt
import pytest
from sqlalchemy import func, select, text

from api.db.models import License, Operation, Tenant, User
from api.db.session import Scope
from api.operations.runner import OperationRunner
from api.stacks.driver import StackChangeRefused, TenantRef
from automation.errors import ErrorKind, OperationError
from tests.api import vault_support
from tests.api.conftest import run_queue, sign_up, signup_and_verify, signup_body


def _tenant(client, tenant) -> dict:
    return client.get(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).json()


def _operation(client, tenant, operation_id) -> dict:
    return client.get(f"/v1/operations/{operation_id}", headers=tenant.headers).json()


def _step(operation: dict, name: str) -> dict:
    return next(s for s in operation["steps"] if s["name"] == name)


def test_crash_mid_step_resumes_without_duplicates(client, services, driver):
    """A worker dies inside stack_up: the rerun skips finished steps and creates nothing twice."""
    body = signup_body()
    accepted = signup_and_verify(client, services, body)
    operation_id = uuid.UUID(accepted["operation"]["id"])
    tenant_id = uuid.UUID(accepted["tenant"]["id"])
    driver.fail_times["provision"] = 1

    runner = OperationRunner(services)
    try:
        runner.run(operation_id, final_attempt=False)  # what the killed worker had done
    except RuntimeError:
        pass
    with services.db.transaction(Scope.system()) as s:
        op = s.get(Operation, operation_id)
        assert op.status == "RUNNING" and op.current_step == "stack_up"
        customer = s.get(Tenant, tenant_id).billing_customer_id

    assert runner.run(operation_id, final_attempt=False).value == "SUCCEEDED"
    with services.db.transaction(Scope.system()) as s:
        op = s.get(Operation, operation_id)
        attempts = {step["name"]: step["attempts"] for step in op.steps}
        assert attempts == {"place": 1, "tenant_record": 1, "billing": 1, "payment": 1, "license": 1, "tenant_secrets": 1, "stack_up": 2,
                            "readiness": 1, "activate": 1}
        assert s.get(Tenant, tenant_id).billing_customer_id == customer
        assert s.scalar(select(func.count()).select_from(License).where(License.tenant_id == tenant_id)) == 1
        assert len(_step_errors(op, "stack_up")) == 1
    assert driver.count("provision", tenant_id) == 2 and len([k for k in driver.stacks if k[0] == tenant_id]) == 1


def _step_errors(op: Operation, name: str) -> list:
    return next(s for s in op.steps if s["name"] == name)["errors"]


def test_failure_after_last_retry_marks_tenant_failed_and_operator_can_retry(client, services, driver, operator_headers):
    driver.fail_times["provision"] = 3  # max_attempts=2 in tests: 3 runs in total
    tenant = sign_up(client, services)
    state = _tenant(client, tenant)
    assert state["status"] == "FAILED" and "injected failure in provision" in state["failure_reason"]
    operation = _operation(client, tenant, tenant.operation_id)
    assert operation["status"] == "FAILED" and "stack_up" in operation["error"]
    assert _step(operation, "stack_up")["attempts"] == 3 and len(_step(operation, "stack_up")["errors"]) == 3

    owner_try = client.post(f"/v1/operations/{tenant.operation_id}/retry", headers=tenant.headers)
    assert owner_try.status_code == 403  # operators only

    driver.fail_times["provision"] = 0
    assert client.post(f"/v1/operations/{tenant.operation_id}/retry", headers=operator_headers).status_code == 202
    run_queue(services)
    assert _tenant(client, tenant)["status"] == "ACTIVE"
    assert _tenant(client, tenant)["failure_reason"] is None
    assert _operation(client, tenant, tenant.operation_id)["status"] == "SUCCEEDED"


def test_only_one_unfinished_operation_per_tenant(client, services):
    tenant = sign_up(client, services, activate=False)
    response = client.delete(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers)
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/operation-in-progress"


def test_suspend_and_reactivate(client, services, driver):
    tenant = sign_up(client, services)
    tenant_uuid = uuid.UUID(tenant.tenant_id)
    suspended = client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=tenant.headers)
    assert suspended.status_code == 202
    run_queue(services)
    assert _tenant(client, tenant)["status"] == "SUSPENDED"
    assert driver.stacks[(tenant_uuid, "shared:eu1")]["suspended"] is True
    license_body = client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()
    assert license_body["status"] == "suspended"

    again = client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=tenant.headers)
    assert again.status_code == 409 and again.json()["type"] == "/problems/invalid-state"

    assert client.post(f"/v1/tenants/{tenant.tenant_id}/reactivate", headers=tenant.headers).status_code == 202
    run_queue(services)
    assert _tenant(client, tenant)["status"] == "ACTIVE"
    assert driver.stacks[(tenant_uuid, "shared:eu1")]["suspended"] is False
    assert client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()["status"] == "active"


def test_change_tier_on_the_same_placement_applies_directly(client, services, driver):
    tenant = sign_up(client, services, tier="low")
    response = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "mid"}, headers=tenant.headers)
    assert response.status_code == 202
    run_queue(services)
    assert _tenant(client, tenant)["tier"] == "mid"
    assert client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()["tier"] == "mid"
    assert driver.stacks[(uuid.UUID(tenant.tenant_id), "shared:eu1")]["environments"] == ["dev", "prod"]


def test_change_to_dedicated_previews_then_waits_for_confirmation(client, services, driver, dedicated_cluster):
    tenant = sign_up(client, services, tier="mid")
    tenant_uuid = uuid.UUID(tenant.tenant_id)
    accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "high"}, headers=tenant.headers).json()
    run_queue(services)
    operation = _operation(client, tenant, accepted["operation"]["id"])
    assert operation["status"] == "AWAITING_CONFIRMATION"
    assert _step(operation, "preview")["result"]["changes"] == {"create": 3}
    assert driver.count("provision", tenant_uuid) == 1  # only signup's; nothing applied yet
    assert _tenant(client, tenant)["tier"] == "mid"

    assert client.post(f"{accepted['operation']['url']}/confirm", headers=tenant.headers).status_code == 202
    run_queue(services)
    state = _tenant(client, tenant)
    assert state["tier"] == "high" and state["placement"] == f"dedicated:{dedicated_cluster}" and state["status"] == "ACTIVE"
    assert (tenant_uuid, f"dedicated:{dedicated_cluster}") in driver.stacks
    assert (tenant_uuid, "shared:eu1") not in driver.stacks  # old placement released


def _kv_license(slug: str) -> dict | None:
    try:
        secret = vault_support.client().secrets.kv.v2.read_secret_version(
            f"{slug}/license", mount_point="tenants", raise_on_deleted_version=False)
    except hvac.exceptions.InvalidPath:
        return None
    return {"token": secret["data"]["data"]["token"], "version": secret["data"]["metadata"]["version"]}


def services_ref(services, tenant):
    with services.db.transaction(Scope.system()) as session:
        row = session.get(Tenant, uuid.UUID(tenant.tenant_id))
        return TenantRef(id=row.id, slug=row.slug, placement=row.placement)


def test_the_current_license_and_database_credentials_are_kept_in_the_tenants_kv_paths(client, services, driver):
    tenant = sign_up(client, services)
    first = _kv_license(tenant.slug)
    assert first["token"] == client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()["token"]
    policy = vault_support.client().sys.read_policy(f"cameleer-tenant-{tenant.slug}")["data"]["rules"]
    assert f'path "tenants/data/{tenant.slug}/*"' in policy and '"read"' in policy and "update" not in policy
    client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers={"Idempotency-Key": uuid.uuid4().hex, **tenant.headers})
    run_queue(services)
    suspended = _kv_license(tenant.slug)
    assert suspended["token"] == client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()["token"]
    assert suspended["version"] == first["version"] + 1
    database = vault_support.client().secrets.kv.v2.read_secret_version(
        f"{tenant.slug}/database-prod", mount_point="tenants", raise_on_deleted_version=False)["data"]["data"]
    assert database == driver.database_credentials(services_ref(services, tenant), ["prod"])["prod"]
    assert not services.tenant_secrets.write(tenant.slug, "license", {"token": suspended["token"],
                                                                      "kid": jwt.get_unverified_header(suspended["token"])["kid"]})
    assert _kv_license(tenant.slug)["version"] == suspended["version"]  # a retried step writes nothing
    vault = services.tenant_secrets  # an environment the tenant no longer has loses its credentials
    vault.write(tenant.slug, "database-dev", {"username": "u", "password": "p"})
    assert vault.remove_databases_except(tenant.slug, ["prod"]) == ["database-dev"]
    assert vault.read(tenant.slug, "database-dev") is None and vault.read(tenant.slug, "database-prod") == database


def test_delete_destroys_scrubs_and_keeps_audit(client, services, driver, auditor_headers):
    tenant = sign_up(client, services)
    tenant_uuid = uuid.UUID(tenant.tenant_id)
    assert _kv_license(tenant.slug) is not None
    assert client.delete(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).status_code == 202
    run_queue(services)
    assert not [k for k in driver.stacks if k[0] == tenant_uuid]
    with services.db.transaction(Scope.system()) as s:
        row = s.get(Tenant, tenant_uuid)
        assert row.status == "DELETED" and row.name == "[deleted]"
        assert s.scalar(select(func.count()).select_from(User).where(User.email == tenant.email)) == 0
        assert s.scalar(select(func.count()).select_from(User).where(User.email.like("scrubbed+%"))) >= 1
    audit = client.get("/v1/platform/audit", params={"tenant_id": tenant.tenant_id}, headers=auditor_headers).json()
    assert {"tenant.signup", "operation.delete.scrub", "operation.delete",
            "operation.delete.secrets_removed"} <= {r["action"] for r in audit}
    assert _kv_license(tenant.slug) is None
    assert f"cameleer-tenant-{tenant.slug}" not in vault_support.client().sys.list_policies()["data"]["policies"]
    assert tenant.email not in str(audit)
    assert client.post("/v1/auth/login", json={"email": tenant.email, "password": "correct-horse-battery-staple-42"}).status_code == 401


def test_history_joins_audit_and_stack_history(client, services):
    tenant = sign_up(client, services)
    history = client.get(f"/v1/tenants/{tenant.tenant_id}/history", headers=tenant.headers).json()
    sources = {e["source"] for e in history["entries"]}
    assert sources == {"audit", "stack"} and history["stack_history_error"] is None
    assert any(e["action"] == "tenant.signup" for e in history["entries"])


def test_lifecycle_idempotency_key(client, services):
    tenant = sign_up(client, services)
    key = {"Idempotency-Key": uuid.uuid4().hex, **tenant.headers}
    first = client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=key).json()
    second = client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=key).json()
    assert first["operation"]["id"] == second["operation"]["id"]


def test_permanent_error_fails_at_once_and_the_job_is_not_retried(client, services, driver):
    from api.stacks.driver import StackUnavailable

    def unavailable(*args, **kwargs):
        raise StackUnavailable("automation layer not installed")

    driver.provision = unavailable
    tenant = sign_up(client, services)
    operation = _operation(client, tenant, tenant.operation_id)
    assert operation["status"] == "FAILED" and _step(operation, "stack_up")["attempts"] == 1
    assert "automation layer not installed" in _tenant(client, tenant)["failure_reason"]
    row = _job(services, tenant.operation_id)
    assert row.status == "failed" and row.attempts == 1


def _job(services, operation_id: str):
    """The operation's job in the queue: its status and how many times it ran."""
    with services.db.transaction(Scope.system()) as s:
        return s.execute(text("SELECT status, attempts FROM procrastinate_jobs WHERE args->>'operation_id' = :id"),
                         {"id": operation_id}).one()


# What the adapter raises for a mandatory policy violation (tests/unit/test_stack_adapter.py).
POLICY_REFUSAL = StackChangeRefused("[policy] update tenant-acme: 1 mandatory policy violation(s): max-replicas; "
                                    "max-replicas: replicas must be at most 5")


def _fail(driver, method: str, error: Exception, times: int = 1) -> None:
    driver.fail_times[method], driver.fail_with[method] = times, error


def test_a_tier_change_refused_by_policy_fails_at_once_and_the_tenant_stays_active(
        client, services, driver, auditor_headers):
    tenant = sign_up(client, services, tier="low")
    _fail(driver, "provision", POLICY_REFUSAL)
    accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "mid"}, headers=tenant.headers).json()
    run_queue(services)

    operation = _operation(client, tenant, accepted["operation"]["id"])
    assert operation["status"] == "FAILED" and _step(operation, "stack_up")["attempts"] == 1
    assert "max-replicas: replicas must be at most 5" in operation["error"]
    assert _job(services, accepted["operation"]["id"]).attempts == 1
    state = _tenant(client, tenant)
    assert (state["status"], state["tier"], state["failure_reason"]) == ("ACTIVE", "low", None)
    audit = client.get("/v1/platform/audit", params={"tenant_id": tenant.tenant_id}, headers=auditor_headers).json()
    [record] = [r for r in audit if r["action"] == "operation.change_tier"]
    assert record["result"] == "failure" and "max-replicas" in record["details"]["error"]


@pytest.mark.parametrize("request_path, status_before", [("suspend", "ACTIVE"), ("reactivate", "SUSPENDED")])
def test_a_lifecycle_operation_failing_after_its_retries_leaves_the_tenant_as_it_was(
        client, services, driver, request_path, status_before):
    tenant = sign_up(client, services)
    if status_before == "SUSPENDED":
        client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=tenant.headers)
        run_queue(services)
    driver.fail_times["provision"] = 3  # every run (max_attempts=2 in tests: 3 runs)
    accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/{request_path}", headers=tenant.headers).json()
    run_queue(services)

    operation = _operation(client, tenant, accepted["operation"]["id"])
    assert operation["status"] == "FAILED" and _step(operation, "stack_up")["attempts"] == 3
    state = _tenant(client, tenant)
    assert (state["status"], state["failure_reason"]) == (status_before, None)


def test_a_transient_engine_failure_is_retried(client, services, driver):
    tenant = sign_up(client, services, tier="low")
    _fail(driver, "provision", OperationError(ErrorKind.TRANSIENT, "connection refused", stack="tenant-acme",
                                              operation="update"))
    accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "mid"}, headers=tenant.headers).json()
    run_queue(services)

    operation = _operation(client, tenant, accepted["operation"]["id"])
    assert operation["status"] == "SUCCEEDED" and _step(operation, "stack_up")["attempts"] == 2
    assert "[transient] update tenant-acme: connection refused" in _step(operation, "stack_up")["errors"][0]["message"]
    assert _tenant(client, tenant)["tier"] == "mid"


def test_a_signup_refused_by_policy_leaves_the_tenant_failed_with_the_violation(client, services, driver):
    _fail(driver, "provision", POLICY_REFUSAL)
    tenant = sign_up(client, services)
    assert _operation(client, tenant, tenant.operation_id)["status"] == "FAILED"
    state = _tenant(client, tenant)
    assert state["status"] == "FAILED" and "max-replicas: replicas must be at most 5" in state["failure_reason"]


def test_a_failed_delete_keeps_the_tenant_deleting_until_an_operator_retries_it(
        client, services, driver, operator_headers):
    tenant = sign_up(client, services)
    _fail(driver, "destroy", StackChangeRefused("[config] destroy tenant-acme: incorrect passphrase"))
    accepted = client.delete(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).json()
    run_queue(services)

    assert _operation(client, tenant, accepted["operation"]["id"])["status"] == "FAILED"
    assert (_tenant(client, tenant)["status"], _tenant(client, tenant)["failure_reason"]) == ("DELETING", None)
    suspend = client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers=tenant.headers)
    assert suspend.status_code == 409 and suspend.json()["type"] == "/problems/invalid-state"

    retried = client.post(f"/v1/operations/{accepted['operation']['id']}/retry", headers=operator_headers)
    assert retried.status_code == 202
    run_queue(services)
    with services.db.transaction(Scope.system()) as s:
        assert s.get(Tenant, uuid.UUID(tenant.tenant_id)).status == "DELETED"
