"""The control plane on the real engine (issue 5, engine-level "done when").

Real PostgreSQL (a throwaway platform database and a throwaway tenant database), the real
Pulumi engine through `api.stacks.automation_adapter.AutomationStackDriver`, the local
Kubernetes API server, the API server (`python -m api`) and workers (`python -m api.worker`)
as processes. Stacks go to a private file backend under tmp (see control_plane.py).

Two tenant stacks for the whole module, to keep the runtime down:

* tenant A: signup -> ACTIVE, replayed signup; then suspend, reactivate, tier change
  (low -> mid, shared placement) and delete;
* tenant B: signup whose worker is SIGKILLed (with its engine processes) in the middle of
  the `stack_up` step, finished by a restarted worker; destroyed at teardown;
* a mid-tier tenant: provisioned only once its first invoice is paid, suspended by billing
  enforcement after a failed payment's grace period, reactivated by the payment.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import jwt
import pytest

from components.catalog import get_tier
from components.naming import TENANT_LABEL, database_identifier, namespace_name
from components.tenant_namespace import DATABASE_SECRET, SERVER_ACCOUNT
from components.tenant_server import LICENSE_FILE, LICENSE_SECRET, SERVER_NAME
from tests.api import stripe_support, vault_support
from tests.integration.conftest import _SESSION_SLUGS, kube_missing
from tests.integration.control_plane import (
    DEV_STATE,
    REPO_ROOT,
    STRONG_PASSWORD,
    ControlPlane,
    pulumi_root,
)

pytestmark = pytest.mark.engine

SIGNUP_STEPS = ["place", "tenant_record", "billing", "payment", "license", "stack_up", "tenant_secrets", "readiness", "activate"]
STALLED_AFTER_SECONDS = 5  # the workers' heartbeat timeout: a killed worker is noticed quickly
# The restarted worker's periodic recovery runs on a minute boundary, then the stack update.
RESUME_TIMEOUT = 300


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cp(tmp_path_factory, tenant_database_url, kubeconfig, pulumi_bin, shared_baseline):
    plane = ControlPlane(
        tmp_path_factory.mktemp("control-plane"), tenant_database_url,
        worker_env={"CAMELEER_STALLED_AFTER_SECONDS": str(STALLED_AFTER_SECONDS),
                    "CAMELEER_READINESS_POLL_SECONDS": "1", "CAMELEER_READINESS_TIMEOUT_SECONDS": "120",
                    # A rollout that cannot finish fails in this long, not in five minutes.
                    "CAMELEER_TENANT_ROLLOUT_TIMEOUT": "40s"},
    )
    try:
        with plane.serving() as problems:
            plane.start_worker()
            yield plane
    finally:
        _SESSION_SLUGS.extend(plane.slugs)  # their database roles go with the tenant database
    leaked = [slug for slug in plane.slugs
              if list(DEV_STATE.glob(f".pulumi/stacks/**/tenant-{slug}.json*"))
              or (REPO_ROOT / "stacks" / "config" / f"Pulumi.tenant-{slug}.yaml").exists()]
    assert not leaked, f"stacks or settings files of {leaked} outside the private backend"
    assert not problems, "cleanup:\n" + "\n".join(problems)


@dataclass
class SignedUp:
    slug: str
    tenant_id: str
    operation_id: str
    key: str
    headers: dict[str, str]
    operation: dict[str, Any]
    seconds: float

    @property
    def stack(self) -> str:
        return f"tenant-{self.slug}"

    @property
    def email(self) -> str:
        return f"owner@{self.slug}.example.com"


@pytest.fixture(scope="module")
def tenant_a(cp) -> SignedUp:
    """A low-tier tenant signed up through the API and driven to the end of its signup."""
    slug, key = cp.unique_slug("cpa"), uuid.uuid4().hex
    started = time.monotonic()
    response = cp.signup(slug, "low", key)
    assert response.status_code == 202, response.text
    accepted = response.json()
    headers = cp.login(f"owner@{slug}.example.com")
    operation = cp.wait_operation(accepted["operation"]["id"], headers)
    return SignedUp(slug, accepted["tenant"]["id"], accepted["operation"]["id"], key, headers, operation,
                    time.monotonic() - started)


@pytest.fixture(scope="module")
def auditor(cp) -> dict[str, str]:
    return cp.platform_user("auditor")


# --------------------------------------------------------------------------- helpers


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def get(cp: ControlPlane, path: str, headers: dict[str, str]) -> dict[str, Any]:
    with cp.client() as client:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def run_lifecycle(cp: ControlPlane, tenant: SignedUp, action: str, body: dict | None = None) -> dict[str, Any]:
    """POST (or DELETE) a lifecycle request and wait for its operation to finish."""
    path = f"/v1/tenants/{tenant.tenant_id}" + (f"/{action}" if action != "delete" else "")
    with cp.client() as client:
        response = (client.delete(path, headers=tenant.headers) if action == "delete"
                    else client.post(path, headers=tenant.headers, json=body))
    assert response.status_code == 202, f"{action}: {response.status_code} {response.text}"
    operation = cp.wait_operation(response.json()["operation"]["id"], tenant.headers)
    assert operation["status"] == "SUCCEEDED", f"{action} failed: {operation['error']}\n{cp.logs()}"
    return operation


def platform_counts(cp: ControlPlane, tenant: SignedUp) -> dict[str, int]:
    queries = {
        "tenants": ("SELECT count(*) FROM tenants", ()),
        "tenants with the slug": ("SELECT count(*) FROM tenants WHERE slug = %s", (tenant.slug,)),
        "operations": ("SELECT count(*) FROM operations", ()),
        "users": ("SELECT count(*) FROM users", ()),
        "memberships": ("SELECT count(*) FROM memberships", ()),
        "licenses": ("SELECT count(*) FROM licenses", ()),
        "jobs": ("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'run_operation'", ()),
        "stack events": ("SELECT count(*) FROM stack_events", ()),
    }
    return {name: cp.scalar(query, *params) for name, (query, params) in queries.items()}


def tenant_namespaces(kube, slug: str) -> list[str]:
    return sorted(ns.metadata.name for ns in kube.core.list_namespace(label_selector=f"{TENANT_LABEL}={slug}").items)


def mounted_license(kube, slug: str, environment: str) -> str:
    secret = kube.core.read_namespaced_secret(LICENSE_SECRET, namespace_name(slug, environment))
    return base64.b64decode(secret.data[LICENSE_FILE]).decode()


def license_verdict(cp: ControlPlane, token: str):
    from api.licensing.verify import keys_from_jwks, verify_license

    with cp.client() as client:
        jwks = client.get("/.well-known/license-jwks.json").raise_for_status().json()
    return verify_license(token, keys_from_jwks(jwks))


def quota_hard(kube, slug: str, environment: str) -> dict[str, str]:
    return dict(kube.core.read_namespaced_resource_quota("tenant-quota", namespace_name(slug, environment)).spec.hard)


def catalog_quota(tier: str, environment: str) -> dict[str, str]:
    return {key: str(value) for key, value in get_tier(tier).quota_for(environment).hard().items()}


def replicas(kube, slug: str, environment: str) -> int:
    return kube.apps.read_namespaced_deployment(SERVER_NAME, namespace_name(slug, environment)).spec.replicas


# --------------------------------------------------------------------------- 1. signup


def test_signup_reaches_active_on_the_cluster_and_a_replay_creates_nothing(cp, tenant_a, kube):
    operation = tenant_a.operation
    assert operation["status"] == "SUCCEEDED", f"{operation['error']}\n{cp.logs()}"
    assert [(s["name"], s["status"], s["attempts"]) for s in operation["steps"]] == [
        (name, "succeeded", 1) for name in SIGNUP_STEPS]
    tenant = get(cp, f"/v1/tenants/{tenant_a.tenant_id}", tenant_a.headers)
    assert (tenant["status"], tenant["tier"], tenant["placement"]) == ("ACTIVE", "low", "shared:eu1")

    # The cluster holds what the tier says: one environment (prod), its namespace, quota,
    # the server Deployment running, the license Secret with the current license.
    namespace = namespace_name(tenant_a.slug, "prod")
    assert tenant_namespaces(kube, tenant_a.slug) == [namespace]
    labels = kube.core.read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = kube.apps.read_namespaced_deployment(SERVER_NAME, namespace)
    assert deployment.spec.replicas >= 1
    assert "@sha256:" in deployment.spec.template.spec.containers[0].image
    assert quota_hard(kube, tenant_a.slug, "prod") == catalog_quota("low", "prod")
    current = get(cp, f"/api/license/{tenant_a.tenant_id}", tenant_a.headers)
    assert (current["tier"], current["status"]) == ("low", "active")
    assert mounted_license(kube, tenant_a.slug, "prod") == current["token"]
    assert license_verdict(cp, current["token"]).state.value == "valid"

    # The stack is in the private backend (not the developer's) with one update recorded by
    # the control plane.
    assert tenant_a.stack in cp.stack_list()
    assert not list(DEV_STATE.glob(f".pulumi/stacks/**/{tenant_a.stack}.json*"))
    history = cp.stack_operations().history(tenant_a.stack)
    assert [(h.kind, h.result) for h in history] == [("update", "succeeded")]
    assert history[0].actor == "control-plane" and tenant_a.slug in history[0].reason
    # The update names the signup operation (not the tenant) in its message and environment.
    assert history[0].operation_id == tenant_a.operation_id and tenant_a.tenant_id not in history[0].message
    assert history[0].environment["ci.build.id"] == tenant_a.operation_id
    # The API serves the same updates, read from the backend (its process runs no engine).
    served = get(cp, f"/v1/tenants/{tenant_a.tenant_id}/history", tenant_a.headers)
    assert served["stack_history_error"] is None
    assert [(e["action"], e["result"], e["details"]["message"], e["details"]["operation_id"])
            for e in served["entries"] if e["source"] == "stack"] \
        == [(f"stack.{h.kind}", h.result, h.message, tenant_a.operation_id) for h in history]

    # Replaying the signup (same Idempotency-Key, same body) is answered alike and creates
    # nothing: no row, no job, no engine run; its link, already followed, creates nothing either.
    before = platform_counts(cp, tenant_a)
    response = cp.request_signup(tenant_a.slug, "low", tenant_a.key)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "verification_mailed"
    with cp.client() as client:
        again = client.post("/v1/signup/verify", json={"token": cp.verification_token(tenant_a.email)})
    assert again.status_code == 410 and again.json()["reason"] == "already used"
    assert platform_counts(cp, tenant_a) == before
    assert before["tenants with the slug"] == 1
    time.sleep(2)  # a job, had one been queued, would have started by now
    assert cp.scalar("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                     "AND task_name = 'run_operation'") == 0
    assert len(cp.stack_operations().history(tenant_a.stack)) == len(history)
    assert tenant_namespaces(kube, tenant_a.slug) == [namespace]


def test_a_signup_whose_pods_cannot_be_scheduled_fails_at_once_and_is_never_active(cp, kube, kubectl):
    """Every node cordoned (`kubectl cordon`, as an operator drains a cluster): the server's
    pod stays Pending, the provider gives up awaiting the rollout, and the tenant ends
    FAILED with the reason after one attempt (no retry can schedule it), never ACTIVE."""
    nodes = [node.metadata.name for node in kube.core.list_node().items]
    assert nodes, "the local cluster has no node (scripts/services.sh starts KWOK's)"

    slug = cp.unique_slug("cpu")
    kubectl("cordon", *nodes)
    try:
        response = cp.signup(slug, "low")
        assert response.status_code == 202, response.text
        accepted = response.json()
        headers = cp.login(f"owner@{slug}.example.com")
        operation = cp.wait_operation(accepted["operation"]["id"], headers, timeout=300)
        [pod] = kube.core.list_namespaced_pod(namespace_name(slug, "prod")).items
        assert pod.status.phase == "Pending" and not pod.spec.node_name
    finally:
        kubectl("uncordon", *nodes)

    assert operation["status"] == "FAILED", operation
    steps = {step["name"]: step for step in operation["steps"]}
    assert (steps["stack_up"]["status"], steps["stack_up"]["attempts"]) == ("failed", 1)
    assert steps["activate"]["status"] != "succeeded"
    assert "failed to fully initialize or become live" in operation["error"], operation["error"]
    tenant = get(cp, f"/v1/tenants/{accepted['tenant']['id']}", headers)
    assert tenant["status"] == "FAILED" and tenant["failure_reason"], tenant


# --------------------------------------------------------------------------- 2. worker crash


def _stack_up_progress(cp: ControlPlane, operation_id: str) -> int:
    """Resources the engine has finished creating in the operation's stack_up step."""
    status = cp.scalar("SELECT status FROM operations WHERE id = %s", operation_id)
    assert status not in ("SUCCEEDED", "FAILED"), f"the signup finished ({status}) before the worker was killed"
    return cp.scalar(
        "SELECT count(*) FROM stack_events WHERE operation_id = %s AND step = 'stack_up' "
        "AND event_type = 'resource-outputs' AND payload->>'op' = 'create'", operation_id)


def test_worker_killed_during_stack_up_resumes_with_one_tenant_and_one_stack(cp, kube):
    cp.stop_workers()  # this test's workers are the only ones on the queue
    try:
        tenants_before = cp.scalar("SELECT count(*) FROM tenants")
        slug = cp.unique_slug("cpb")
        response = cp.signup(slug, "low")
        assert response.status_code == 202, response.text
        tenant_id, operation_id = response.json()["tenant"]["id"], response.json()["operation"]["id"]
        headers = cp.login(f"owner@{slug}.example.com")

        worker = cp.start_worker()
        wait_for(lambda: _stack_up_progress(cp, operation_id) >= 3, 180, "the engine to create resources",
                 interval=0.05)
        customer = cp.scalar("SELECT billing_customer_id FROM tenants WHERE id = %s", tenant_id)
        assert customer
        cp.kill(worker)  # SIGKILL to the worker and its engine processes, mid-update

        # What the crash left: a job still "doing" for a dead worker, the step half done, and
        # the engine's lock on the stack.
        operation = cp.operation(operation_id, headers)
        step = {s["name"]: s for s in operation["steps"]}["stack_up"]
        assert (operation["status"], step["status"], step["attempts"]) == ("RUNNING", "running", 1)
        assert cp.scalar("SELECT status FROM procrastinate_jobs WHERE args->>'operation_id' = %s",
                         operation_id) == "doing"
        state = cp.root / "state" / ".pulumi"
        assert list(state.glob(f"locks/**/tenant-{slug}/*.json")), "the killed update left no lock"

        cp.start_worker()  # the restart: recovers the stalled job, then the stale stack lock
        operation = cp.wait_operation(operation_id, headers, timeout=RESUME_TIMEOUT)
    finally:
        if not cp.workers:
            cp.start_worker()

    assert operation["status"] == "SUCCEEDED", f"{operation['error']}\n{cp.logs()}"
    attempts = {s["name"]: s["attempts"] for s in operation["steps"]}
    assert attempts == {"place": 1, "tenant_record": 1, "billing": 1, "payment": 1, "license": 1, "tenant_secrets": 1, "stack_up": 2,
                        "readiness": 1, "activate": 1}, [(s["name"], s["errors"]) for s in operation["steps"] if s["errors"]]
    assert get(cp, f"/v1/tenants/{tenant_id}", headers)["status"] == "ACTIVE"

    # One tenant, one billing customer, one license, one signup operation.
    assert cp.scalar("SELECT count(*) FROM tenants") == tenants_before + 1
    assert cp.scalar("SELECT count(*) FROM tenants WHERE slug = %s", slug) == 1
    assert cp.scalar("SELECT billing_customer_id FROM tenants WHERE id = %s", tenant_id) == customer
    assert cp.scalar("SELECT count(*) FROM licenses WHERE tenant_id = %s", tenant_id) == 1
    assert cp.scalar("SELECT count(*) FROM operations WHERE tenant_id = %s", tenant_id) == 1

    # One stack, unlocked; its history shows the recovery and the update that finished the job.
    stacks = [name for name in cp.stack_list() if slug in name]
    assert stacks == [f"tenant-{slug}"]
    assert not list(state.glob(f"locks/**/tenant-{slug}/*.json"))
    history = cp.stack_operations().history(f"tenant-{slug}")
    # Newest first: the update that finished; before it, if the dead update had resources in
    # flight, the recovery's refresh. The killed update itself never completed.
    assert (history[0].kind, history[0].result) == ("update", "succeeded")
    assert [h.kind for h in history].count("update") == 1
    assert all(h.kind == "refresh" and h.reason.startswith("recovery after an interrupted operation")
               for h in history[1:]), [(h.kind, h.reason) for h in history]
    assert all(h.actor == "control-plane" and slug in h.reason for h in history)
    recovery = cp.scalar(
        "SELECT count(*) FROM stack_events WHERE operation_id = %s AND step = 'stack_up' "
        "AND event_type = 'recovery' AND payload->>'message' LIKE 'stale lock%%'", operation_id)
    assert recovery >= 1, "the restarted worker did not report removing the dead update's lock"

    # The cluster has the tenant's namespace once, with one server; the database one schema.
    assert tenant_namespaces(kube, slug) == [namespace_name(slug, "prod")]
    deployments = kube.apps.list_namespaced_deployment(namespace_name(slug, "prod")).items
    assert [d.metadata.name for d in deployments] == [SERVER_NAME]
    schemas = cp.tenant_schemas(slug)
    assert schemas == [database_identifier(slug, "prod")]


def test_a_sealed_secrets_server_makes_the_signup_wait_then_finish_after_unseal(cp):
    """Sealed: a new signup is refused whole (503, nothing written), an accepted one waits in
    its license step with the reason, logins are refused (no weaker key signs instead), and
    readiness says why; unsealed, the signup finishes."""
    vault = vault_support.client()
    unseal_key = vault_support.unseal_key()
    slug, key = cp.unique_slug("cps"), uuid.uuid4().hex
    cp.stop_workers()  # the signup is accepted before the seal, and runs after it
    try:
        vault.sys.seal()
        try:
            refused = cp.signup(slug, "low", key)
            assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
            assert refused.json()["type"] == "/problems/secrets-unavailable" and "sealed" in refused.json()["detail"]
            assert cp.scalar("SELECT count(*) FROM tenants WHERE slug = %s", slug) == 0
        finally:
            vault_support.unseal(unseal_key)
        response = cp.signup(slug, "low", key)
        assert response.status_code == 202, response.text
        operation_id = response.json()["operation"]["id"]

        vault.sys.seal()
        try:
            cp.start_worker()

            def waiting_on_secrets() -> list[str] | None:
                steps = {s["name"]: s for s in cp.scalar("SELECT steps FROM operations WHERE id = %s", operation_id)}
                step = steps["license"]
                errors = [e["message"] for e in step.get("errors", [])]
                return errors if step["status"] == "retrying" and any("sealed" in e for e in errors) else None

            errors = wait_for(waiting_on_secrets, 90, "the license step to wait for the sealed secrets server")
            assert any("the secrets server is sealed" in e for e in errors), errors
            with cp.client() as client:
                assert client.get("/readyz").json()["detail"] == "the secrets server is sealed"
                login = client.post("/v1/auth/login", json={"email": f"owner@{slug}.example.com",
                                                            "password": STRONG_PASSWORD})
                assert login.status_code == 503 and login.json()["type"] == "/problems/signing-unavailable", login.text
            assert cp.scalar("SELECT status FROM tenants WHERE slug = %s", slug) != "ACTIVE"
            assert cp.scalar("SELECT count(*) FROM licenses l JOIN tenants t ON t.id = l.tenant_id"
                             " WHERE t.slug = %s", slug) == 0
        finally:
            vault_support.unseal(unseal_key)
    finally:
        if not cp.workers:
            cp.start_worker()
    headers = cp.login(f"owner@{slug}.example.com")
    operation = cp.wait_operation(operation_id, headers, timeout=RESUME_TIMEOUT)
    assert operation["status"] == "SUCCEEDED", operation["error"]
    assert f"tenant-{slug}" in cp.stack_list()


def tenant_server_login(kubectl, slug: str, role: str, audience: str = "openbao") -> hvac.Client:
    """Log in to OpenBao as a tenant server does: with a token of its service account."""
    token = kubectl("create", "token", SERVER_ACCOUNT, "-n", namespace_name(slug, "prod"),
                    "--audience", audience, "--duration", "10m").strip()
    client = hvac.Client(url=os.environ["VAULT_ADDR"])
    client.auth.kubernetes.login(role, token)
    return client


def kv_license(client: hvac.Client, slug: str) -> dict[str, str]:
    secret = client.secrets.kv.v2.read_secret_version(f"{slug}/license", mount_point="tenants",
                                                     raise_on_deleted_version=False)
    return secret["data"]["data"]


def test_a_tenant_server_reads_its_own_secrets_and_is_refused_another_tenants(cp, tenant_a, kubectl, kube):
    assert tenant_a.operation["status"] == "SUCCEEDED", tenant_a.operation["error"]
    slug_b = cp.unique_slug("cpb")
    accepted = cp.signup(slug_b, "low").json()
    operation = cp.wait_operation(accepted["operation"]["id"], cp.login(f"owner@{slug_b}.example.com"))
    assert operation["status"] == "SUCCEEDED", operation["error"]

    server_a = tenant_server_login(kubectl, tenant_a.slug, f"tenant-{tenant_a.slug}")
    license_a = get(cp, f"/api/license/{tenant_a.tenant_id}", tenant_a.headers)
    assert kv_license(server_a, tenant_a.slug)["token"] == license_a["token"]
    database = server_a.secrets.kv.v2.read_secret_version(
        f"{tenant_a.slug}/database-prod", mount_point="tenants", raise_on_deleted_version=False)["data"]["data"]
    delivered = kube.core.read_namespaced_secret(DATABASE_SECRET, namespace_name(tenant_a.slug, "prod")).data
    assert database == {key: base64.b64decode(value).decode() for key, value in delivered.items()}
    assert database["username"] == database_identifier(tenant_a.slug, "prod") and len(database["password"]) >= 32
    with pytest.raises(hvac.exceptions.Forbidden):
        kv_license(server_a, slug_b)
    with pytest.raises(hvac.exceptions.Forbidden):  # read-only, even on its own path
        server_a.secrets.kv.v2.create_or_update_secret(f"{tenant_a.slug}/license", secret={"token": "forged"},
                                                       mount_point="tenants")
    with pytest.raises(hvac.exceptions.Forbidden):  # and no other engine
        server_a.secrets.transit.sign_data("cameleer-licenses", hash_input="aGk=")
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):  # A's token is not B's server
        tenant_server_login(kubectl, tenant_a.slug, f"tenant-{slug_b}")
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):  # a token meant for the API server
        tenant_server_login(kubectl, tenant_a.slug, f"tenant-{tenant_a.slug}", audience="https://kubernetes.default.svc")
    server_b = tenant_server_login(kubectl, slug_b, f"tenant-{slug_b}")
    assert kv_license(server_b, slug_b)["token"] != license_a["token"]


# --------------------------------------------------------------------------- 3. billing


def running_pods(kube, slug: str) -> int:
    pods = kube.core.list_pod_for_all_namespaces(label_selector=f"{TENANT_LABEL}={slug}").items
    return sum(1 for pod in pods if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)


def stripe_event(cp: ControlPlane, event_type: str, customer: str) -> dict[str, Any]:
    """Deliver a webhook signed with the endpoint secret, as Stripe does."""
    payload = stripe_support.event(event_type, {"object": "invoice", "id": f"in_{uuid.uuid4().hex[:14]}",
                                                "customer": customer, "status": "paid"})
    headers = stripe_support.signed(payload, cp.env["CAMELEER_STRIPE_WEBHOOK_SECRET"])
    with cp.client() as client:
        response = client.post("/v1/billing/webhook", content=payload, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def latest_operation(cp: ControlPlane, tenant_id: str, kind: str) -> str | None:
    return cp.scalar("SELECT id::text FROM operations WHERE tenant_id = %s AND kind = %s "
                     "ORDER BY created_at DESC LIMIT 1", tenant_id, kind)


def test_a_paid_tier_runs_only_while_it_is_paid(cp, kube):
    slug = cp.unique_slug("cpm")
    response = cp.signup(slug, "mid")
    assert response.status_code == 202, response.text
    tenant_id, operation_id = response.json()["tenant"]["id"], response.json()["operation"]["id"]
    headers = cp.login(f"owner@{slug}.example.com")

    # Nothing is provisioned before the first invoice is paid.
    wait_for(lambda: cp.operation(operation_id, headers)["status"] == "AWAITING_PAYMENT", 60, "the signup to wait for payment")
    assert tenant_namespaces(kube, slug) == []
    customer = cp.scalar("SELECT billing_customer_id FROM tenants WHERE id = %s", tenant_id)
    assert "resumed" in stripe_event(cp, "invoice.paid", customer)["outcome"]
    assert cp.wait_operation(operation_id, headers)["status"] == "SUCCEEDED"
    wait_for(lambda: running_pods(kube, slug) == 2, 60, "the dev and prod servers to run")

    # A failed payment starts the grace period; when it has passed, billing enforcement
    # (the periodic job; here its CLI) suspends the tenant: no pod runs.
    assert "payment failed" in stripe_event(cp, "invoice.payment_failed", customer)["outcome"]
    assert get(cp, f"/v1/tenants/{tenant_id}", headers)["status"] == "ACTIVE"
    cp.scalar("UPDATE tenants SET payment_failed_at = now() - interval '4 days' WHERE id = %s RETURNING 1", tenant_id)
    enforced = subprocess.run([sys.executable, "-m", "api.billing.cli", "enforce", "--json"], env=cp.env,
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert enforced.returncode == 0, enforced.stderr
    # (The workers' periodic enforcement may have taken the tenant first: then it is absent.)
    assert json.loads(enforced.stdout).get(slug, "suspend").startswith("suspend"), enforced.stdout
    suspend = cp.wait_operation(latest_operation(cp, tenant_id, "suspend"), headers)
    assert suspend["status"] == "SUCCEEDED", suspend["error"]
    assert get(cp, f"/v1/tenants/{tenant_id}", headers)["status"] == "SUSPENDED"
    wait_for(lambda: running_pods(kube, slug) == 0, 90, "the suspended tenant's pods to be gone")
    with cp.client() as client:
        refused = client.post(f"/v1/tenants/{tenant_id}/reactivate", headers=headers)
    assert refused.status_code == 402, refused.text

    # Paying lifts the hold: the tenant is reactivated and runs again.
    assert "reactivate started" in stripe_event(cp, "invoice.paid", customer)["outcome"]
    reactivate = cp.wait_operation(latest_operation(cp, tenant_id, "reactivate"), headers)
    assert reactivate["status"] == "SUCCEEDED", reactivate["error"]
    assert get(cp, f"/v1/tenants/{tenant_id}", headers)["status"] == "ACTIVE"
    wait_for(lambda: running_pods(kube, slug) == 2, 90, "the servers to run again")


# --------------------------------------------------------------------------- 4. lifecycle


def state_copy(cp: ControlPlane, stack: str, backend: Path, *, key_of: str | None = None) -> Path:
    """The stack's checkpoint, copied into a backend of its own (what a backup holds);
    `key_of`: made to name another stack's transit key."""
    source = cp.root / "state" / ".pulumi"
    target = backend / ".pulumi" / "stacks" / "cameleer" / f"{stack}.json"
    target.parent.mkdir(parents=True)
    checkpoint = json.loads((source / "stacks" / "cameleer" / f"{stack}.json").read_text())
    provider = checkpoint["checkpoint"]["latest"]["secrets_providers"]["state"]
    assert provider["url"] == f"hashivault://cameleer-stack-{stack}"  # its own key, not the passphrase
    if key_of is not None:
        provider["url"] = f"hashivault://cameleer-stack-{key_of}"
    target.write_text(json.dumps(checkpoint))
    shutil.copy(source / "meta.yaml", backend / ".pulumi" / "meta.yaml")
    return backend


def exported_with_secrets(cp: ControlPlane, backend: Path, stack: str) -> subprocess.CompletedProcess:
    env = {**cp.env, "PULUMI_BACKEND_URL": f"file://{backend}?metadata=skip"}
    return subprocess.run([str(pulumi_root() / "bin" / "pulumi"), "stack", "export", "--stack", stack, "--show-secrets"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def drift_finding(cp: ControlPlane, stack: str) -> tuple | None:
    return cp.row("SELECT id, findings, cleared_at, correction_operation_id FROM drift_findings"
                  " WHERE stack = %s ORDER BY id DESC LIMIT 1", stack)


def test_the_drift_watcher_reports_a_kubectl_scale_in_seconds_and_queues_an_audited_correction(
        cp, tenant_a, auditor, kube, kubectl):
    """`python -m api.drift` beside the workers: the scale is a finding within 5 s, the low
    tier's rule queues a drift_correction operation that a worker runs, the finding closes,
    and each step is in the hash-chained audit log."""
    watcher = cp._spawn("drift-watch", ["-m", "api.drift", "--resync", "2", "--correction-interval", "600"])
    try:
        wait_for(lambda: "drift watch: ready" in cp.logs(lines=400), 120, "the watcher's first comparison")
        started = time.monotonic()
        kubectl("-n", namespace_name(tenant_a.slug, "prod"), "scale", "deployment", SERVER_NAME, "--replicas=3")
        finding = wait_for(lambda: drift_finding(cp, tenant_a.stack), 30, "a drift finding")
        assert time.monotonic() - started < 5, f"found after {time.monotonic() - started:.2f}s"
        assert finding[1] == [{"resource": "prod-server-deployment", "what": "changed",
                               "paths": ["spec.replicas"], "detail": ""}]
        operation_id = wait_for(lambda: drift_finding(cp, tenant_a.stack)[3], 30, "a queued correction")
        operation = cp.wait_operation(str(operation_id), auditor, timeout=300)
        assert operation["kind"] == "drift_correction" and operation["status"] == "SUCCEEDED", operation
        wait_for(lambda: drift_finding(cp, tenant_a.stack)[2], 60, "the finding to close")
    finally:
        cp.stop(watcher, timeout=10)
    assert replicas(kube, tenant_a.slug, "prod") == 1
    assert get(cp, f"/v1/tenants/{tenant_a.tenant_id}", tenant_a.headers)["status"] == "ACTIVE"
    actions = [r["action"] for r in get(cp, f"/v1/platform/audit?tenant_id={tenant_a.tenant_id}", auditor)]
    for action in ("drift.detected", "drift.correction_requested", "operation.drift_correction", "drift.cleared"):
        assert action in actions, actions
    assert get(cp, "/v1/platform/audit/verify", auditor)["ok"]
    history = [e for e in cp.stack_operations().history(tenant_a.stack) if e.change_kind == "drift-correction"]
    assert history and history[0].reason == "drift correction"


def test_suspend_reactivate_change_tier_and_delete(cp, tenant_a, auditor, kube, tmp_path):
    assert tenant_a.operation["status"] == "SUCCEEDED", tenant_a.operation["error"]
    slug, tenant_path = tenant_a.slug, f"/v1/tenants/{tenant_a.tenant_id}"
    license_path = f"/api/license/{tenant_a.tenant_id}"
    running = replicas(kube, slug, "prod")
    assert running >= 1

    # Suspend: workloads to zero, license suspended (in the API and in the mounted Secret).
    run_lifecycle(cp, tenant_a, "suspend")
    assert get(cp, tenant_path, tenant_a.headers)["status"] == "SUSPENDED"
    assert replicas(kube, slug, "prod") == 0
    suspended = get(cp, license_path, tenant_a.headers)
    assert suspended["status"] == "suspended"
    assert mounted_license(kube, slug, "prod") == suspended["token"]
    assert license_verdict(cp, suspended["token"]).state.value == "suspended"

    # Reactivate: replicas back, license active again.
    run_lifecycle(cp, tenant_a, "reactivate")
    assert get(cp, tenant_path, tenant_a.headers)["status"] == "ACTIVE"
    assert replicas(kube, slug, "prod") == running
    active = get(cp, license_path, tenant_a.headers)
    assert active["status"] == "active" and active["token"] != suspended["token"]
    assert mounted_license(kube, slug, "prod") == active["token"]
    assert license_verdict(cp, active["token"]).state.value == "valid"

    # Tier change low -> mid (both shared: no move, no confirmation): the quotas on the
    # cluster, the environments and the license's tier and features follow the catalog.
    assert catalog_quota("mid", "prod") != catalog_quota("low", "prod")
    operation = run_lifecycle(cp, tenant_a, "tier", {"tier": "mid"})
    assert [s["name"] for s in operation["steps"]] == ["billing", "license", "stack_up", "tenant_secrets", "readiness", "activate"]
    tenant = get(cp, tenant_path, tenant_a.headers)
    assert (tenant["status"], tenant["tier"], tenant["placement"]) == ("ACTIVE", "mid", "shared:eu1")
    assert quota_hard(kube, slug, "prod") == catalog_quota("mid", "prod")
    assert tenant_namespaces(kube, slug) == sorted(namespace_name(slug, env) for env in ("dev", "prod"))
    assert quota_hard(kube, slug, "dev") == catalog_quota("mid", "dev")
    mid = get(cp, license_path, tenant_a.headers)
    assert (mid["tier"], mid["status"]) == ("mid", "active")
    claims = jwt.decode(mid["token"], options={"verify_signature": False})
    assert claims["tier"] == "mid" and claims["features"] == get_tier("mid").features.as_claims()
    assert claims["features"] != get_tier("low").features.as_claims()
    for environment in ("dev", "prod"):
        assert mounted_license(kube, slug, environment) == mid["token"]
    assert license_verdict(cp, mid["token"]).claims["tier"] == "mid"
    vault = vault_support.client()
    assert kv_license(vault, slug)["token"] == mid["token"]
    role = vault.auth.kubernetes.read_role(f"tenant-{slug}")  # hvac returns the role itself
    assert sorted(role["bound_service_account_namespaces"]) == [namespace_name(slug, env) for env in ("dev", "prod")]

    # Signup, suspend, reactivate, tier change; the drift test's correction of this stack
    # (when it ran first) is its own kind of update.
    history = [h for h in cp.stack_operations().history(tenant_a.stack) if h.change_kind != "drift-correction"]
    assert [(h.kind, h.result) for h in history] == [("update", "succeeded")] * 4
    assert cp.scalar("SELECT count(*) FROM licenses WHERE tenant_id = %s", tenant_a.tenant_id) == 4

    # Delete: the stack is destroyed and removed, personal data scrubbed, the audit trail kept.
    # A copy of the state taken before (as a backup would be) decrypts with the stack's own
    # key until the delete destroys that key; from then on it never does.
    copy = state_copy(cp, tenant_a.stack, tmp_path / "copied-backend")
    assert mid["token"] in exported_with_secrets(cp, copy, tenant_a.stack).stdout
    other = next(name for name in cp.stack_list() if name.startswith("tenant-") and name != tenant_a.stack)
    with_other_key = exported_with_secrets(cp, state_copy(cp, tenant_a.stack, tmp_path / "other-key", key_of=other),
                                           tenant_a.stack)
    assert with_other_key.returncode != 0 and mid["token"] not in with_other_key.stdout  # another tenant's key opens nothing
    user_id = cp.scalar("SELECT id::text FROM users WHERE email = %s", tenant_a.email)
    audit_before = cp.scalar("SELECT count(*) FROM audit_log WHERE tenant_id = %s", tenant_a.tenant_id)
    run_lifecycle(cp, tenant_a, "delete")
    with pytest.raises(hvac.exceptions.InvalidPath):  # its secrets, its role and its policy are gone
        kv_license(vault, slug)
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.auth.kubernetes.read_role(f"tenant-{slug}")
    assert f"cameleer-tenant-{slug}" not in vault.sys.list_policies()["data"]["policies"]
    shredded = exported_with_secrets(cp, copy, tenant_a.stack)
    assert shredded.returncode != 0 and mid["token"] not in shredded.stdout + shredded.stderr
    assert f"cameleer-stack-{tenant_a.stack}" in shredded.stderr, shredded.stderr  # the key it lacks

    wait_for(lambda: not tenant_namespaces(kube, slug), 90, "the tenant's namespaces to be gone")
    for environment in ("dev", "prod"):
        assert kube_missing(kube.core.read_namespace, namespace_name(slug, environment))
    assert tenant_a.stack not in cp.stack_list()
    assert not (REPO_ROOT / "stacks" / "config" / f"Pulumi.{tenant_a.stack}.yaml").exists()
    assert cp.tenant_schemas(slug) == []

    tenant = get(cp, tenant_path, auditor)
    assert (tenant["status"], tenant["name"]) == ("DELETED", "[deleted]")
    assert cp.scalar("SELECT count(*) FROM users WHERE email = %s", tenant_a.email) == 0
    email, password_hash = cp.row("SELECT email, password_hash FROM users WHERE id = %s", user_id)
    assert email.startswith("scrubbed+") and password_hash == "!"
    assert cp.scalar("SELECT count(*) FROM memberships WHERE tenant_id = %s", tenant_a.tenant_id) == 0
    with cp.client() as client:
        login = client.post("/v1/auth/login", json={"email": tenant_a.email, "password": STRONG_PASSWORD})
    assert login.status_code == 401
    assert get(cp, license_path, auditor)["status"] == "revoked"

    records = get(cp, f"/v1/platform/audit?tenant_id={tenant_a.tenant_id}&limit=1000", auditor)
    actions = {record["action"] for record in records}
    assert {"tenant.signup", "operation.suspend", "operation.reactivate", "operation.change_tier",
            "operation.delete", "operation.delete.scrub", "operation.delete.secrets_removed",
            "operation.delete.crypto_shred"} <= actions
    assert len(records) > audit_before
    assert tenant_a.email not in json.dumps(records)  # the trail holds ids, no personal data
    verdict = get(cp, "/v1/platform/audit/verify", auditor)
    assert verdict["ok"] is True and verdict["checked"] >= len(records), verdict
