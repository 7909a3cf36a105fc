"""Many clusters, for real: the control plane (API + workers as processes, the real engine)
over three local clusters registered as an operator registers them: eu1 and eu2 shared, dc1
dedicated. Each is its own API server with simulated nodes (scripts/services.sh); the plane
reaches them only through the kubeconfigs the registry keeps in OpenBao.

* a low signup lands on the emptier shared cluster and runs there; a cordoned one gets nothing;
* a business signup lands on its dedicated cluster; `pulumi preview` by hand shows no changes;
  deleting the tenant frees the cluster for the next dedicated customer;
* the shared-to-dedicated move, with the worker killed mid-way: the tenant ends ACTIVE on the
  dedicated cluster, its shared namespaces gone, its data kept.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from api import tenant_secrets
from components.naming import database_identifier, namespace_name
from tests.api import vault_support
from components.catalog import Placement, tiers_placed
from tests.integration.conftest import _SESSION_SLUGS, kube_clients, kube_missing
from tests.integration.control_plane import REPO_ROOT, ControlPlane, RegisteredCluster, pulumi_root
from tests.integration.test_control_plane_engine import stripe_event, tenant_namespaces, wait_for

pytestmark = pytest.mark.engine

STALLED_AFTER_SECONDS = 5
RESUME_TIMEOUT = 300


@pytest.fixture(scope="module")
def clusters(cluster_kubeconfigs) -> dict[str, Any]:
    """Typed clients of eu1, eu2 and dc1 by name."""
    from kubernetes import config

    missing = {"eu1", "eu2", "dc1"} - set(cluster_kubeconfigs)
    if missing:
        pytest.fail(f"these tests need the local clusters eu1, eu2 and dc1 (CAMELEER_LOCAL_CLUSTERS); missing {missing}")
    return {name: kube_clients(config.new_client_from_config(config_file=path))
            for name, path in cluster_kubeconfigs.items()}


@pytest.fixture(scope="module")
def cp(tmp_path_factory, tenant_database_url, cluster_kubeconfigs, clusters,
       shared_baseline) -> Iterator[ControlPlane]:
    files = cluster_kubeconfigs
    plane = ControlPlane(
        tmp_path_factory.mktemp("clusters-plane"), tenant_database_url,
        worker_env={"CAMELEER_STALLED_AFTER_SECONDS": str(STALLED_AFTER_SECONDS),
                    "CAMELEER_READINESS_POLL_SECONDS": "1", "CAMELEER_READINESS_TIMEOUT_SECONDS": "120",
                    "CAMELEER_TENANT_ROLLOUT_TIMEOUT": "40s"},
        # eu1 declares half eu2's CPU: with both empty, eu2 has the more room.
        clusters=[RegisteredCluster("eu1", "shared", files["eu1"], cpu="48", memory="192Gi"),
                  RegisteredCluster("eu2", "shared", files["eu2"]),
                  RegisteredCluster("dc1", "dedicated", files["dc1"], cpu="64", memory="256Gi")],
    )
    # eu1's baseline is the session's (shared_baseline); eu2 starts without one (an earlier demo's
    # PriorityClasses are removed; the demo's next run puts them back): its first tenant brings it up.
    for tier in tiers_placed(Placement.SHARED):
        if not kube_missing(clusters["eu2"].scheduling.read_priority_class, tier.priority_class_name):
            clusters["eu2"].scheduling.delete_priority_class(tier.priority_class_name)
    try:
        with plane.serving() as problems:
            plane.start_worker()
            yield plane
    finally:
        _SESSION_SLUGS.extend(plane.slugs)
    assert not problems, "cleanup:\n" + "\n".join(problems)


def sign_up_active(cp: ControlPlane, tier: str, prefix: str) -> tuple[str, str, dict[str, str]]:
    """A tenant of `tier` signed up, paid when its tier has no trial, and ACTIVE: (slug, id, owner's headers)."""
    slug = cp.unique_slug(prefix)
    response = cp.signup(slug, tier)
    assert response.status_code == 202, response.text
    tenant_id, operation_id = response.json()["tenant"]["id"], response.json()["operation"]["id"]
    headers = cp.login(f"owner@{slug}.example.com")
    wait_for(lambda: cp.operation(operation_id, headers)["status"] in ("AWAITING_PAYMENT", "SUCCEEDED", "FAILED"),
             180, "the signup to run")
    if cp.operation(operation_id, headers)["status"] == "AWAITING_PAYMENT":
        stripe_event(cp, "invoice.paid", cp.scalar("SELECT billing_customer_id FROM tenants WHERE id = %s", tenant_id))
    operation = cp.wait_operation(operation_id, headers)
    assert operation["status"] == "SUCCEEDED", f"{operation['error']}\n{cp.logs()}"
    return slug, tenant_id, headers


def database_credentials(slug: str, environment: str) -> dict[str, str]:
    """The tenant's database credentials as its servers read them (its KV path)."""
    secret = vault_support.client().secrets.kv.v2.read_secret_version(
        f"{slug}/{tenant_secrets.database(environment)}", mount_point=tenant_secrets.SECRETS_MOUNT,
        raise_on_deleted_version=True)
    return secret["data"]["data"]


def placement(cp: ControlPlane, tenant_id: str) -> str:
    return cp.scalar("SELECT placement FROM tenants WHERE id = %s", tenant_id)


def running_pods(kube, slug: str) -> int:
    pods = kube.core.list_pod_for_all_namespaces(label_selector=f"cameleer.io/tenant={slug}").items
    return sum(1 for pod in pods if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)


@contextmanager
def cordoned(cp: ControlPlane, name: str) -> Iterator[None]:
    cp.clusters_cli("cordon", name)
    try:
        yield
    finally:
        cp.clusters_cli("uncordon", name)


def test_a_low_signup_lands_on_the_emptier_shared_cluster_and_a_cordoned_one_gets_nothing(cp, clusters):
    slug, tenant_id, _ = sign_up_active(cp, "low", "clr")
    assert placement(cp, tenant_id) == "shared:eu2"
    assert "shared-eu2" in cp.stack_list(), "the first tenant on eu2 did not bring its baseline up"
    assert not kube_missing(clusters["eu2"].scheduling.read_priority_class, "cameleer-tenant-low")
    assert tenant_namespaces(clusters["eu2"], slug) == [namespace_name(slug, "prod")]
    assert running_pods(clusters["eu2"], slug) == 1
    assert tenant_namespaces(clusters["eu1"], slug) == [] and tenant_namespaces(clusters["dc1"], slug) == []

    with cordoned(cp, "eu2"):
        slug, tenant_id, _ = sign_up_active(cp, "low", "clc")
    assert placement(cp, tenant_id) == "shared:eu1"
    assert tenant_namespaces(clusters["eu1"], slug) == [namespace_name(slug, "prod")]
    assert tenant_namespaces(clusters["eu2"], slug) == []
    listed = json.loads(cp.clusters_cli("list", "--json"))
    assert {c["name"]: c["tenants"] for c in listed} == {"eu1": 1, "eu2": 1, "dc1": 0}


def test_a_business_signup_lands_on_its_dedicated_cluster_and_a_preview_by_hand_shows_no_changes(cp, clusters):
    slug, tenant_id, headers = sign_up_active(cp, "business", "cld")
    assert placement(cp, tenant_id) == "dedicated:dc1"
    environments = sorted(namespace_name(slug, env) for env in ("dev", "staging", "prod"))
    assert tenant_namespaces(clusters["dc1"], slug) == environments
    assert running_pods(clusters["dc1"], slug) == 3
    assert tenant_namespaces(clusters["eu1"], slug) == [] and tenant_namespaces(clusters["eu2"], slug) == []
    assert cp.scalar("SELECT baseline_stack FROM clusters WHERE name = 'dc1'") == f"dedicated-{slug}"

    # The operator's previews, by hand: the bare CLI with the pack, and `cameleer preview <slug>`.
    settings_file = cp.root / "data" / "stack-config" / f"Pulumi.dedicated-{slug}.yaml"
    by_hand = subprocess.run(
        [str(REPO_ROOT / "scripts" / "pulumi-with-policy"), "preview", "-s", f"dedicated-{slug}",
         "--config-file", str(settings_file), "--expect-no-changes", "--non-interactive"],
        cwd=REPO_ROOT, env={**cp.env, "CAMELEER_PULUMI_ROOT": str(pulumi_root())}, capture_output=True, text=True,
        timeout=300)
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    assert "dc1" not in by_hand.stderr
    cameleer = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "automation.cli", "preview", slug,
                               "--json"], cwd=REPO_ROOT, env=cp.env, capture_output=True, text=True, timeout=300)
    assert cameleer.returncode == 0, cameleer.stderr
    preview = json.loads(cameleer.stdout)
    assert preview["stack"] == f"dedicated-{slug}"
    assert [c for c in preview["changes"] if c["op"] != "same"] == []

    # The customer leaves: the cluster is empty again and free for the next dedicated customer.
    with cp.client() as client:
        deleting = client.delete(f"/v1/tenants/{tenant_id}", headers=headers)
    assert deleting.status_code == 202, deleting.text
    operation = cp.wait_operation(deleting.json()["operation"]["id"], cp.platform_user("operator"))
    assert operation["status"] == "SUCCEEDED", operation["error"]
    wait_for(lambda: tenant_namespaces(clusters["dc1"], slug) == [], 120, "the tenant's namespaces to go")
    assert cp.scalar("SELECT baseline_stack FROM clusters WHERE name = 'dc1'") is None


def test_the_move_to_a_dedicated_cluster_survives_a_killed_worker_and_keeps_the_data(cp, clusters):
    slug, tenant_id, headers = sign_up_active(cp, "low", "clm")
    source = placement(cp, tenant_id).partition(":")[2]
    schema = database_identifier(slug, "prod")
    with psycopg.connect(cp.tenant_database_url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".kept (note text)')
        conn.execute(f"INSERT INTO \"{schema}\".kept VALUES ('written before the move')")
    password_in_use = database_credentials(slug, "prod")["password"]
    settings = cp.root / "data" / "stack-config"
    cp.pulumi("config", "set", "cameleer:driftCorrection", "auto", "-s", f"tenant-{slug}",
              "--config-file", str(settings / f"Pulumi.tenant-{slug}.yaml"))  # an operator's setting

    with cp.client() as client:
        accepted = client.post(f"/v1/tenants/{tenant_id}/tier", json={"tier": "business"}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    operation_id = accepted.json()["operation"]["id"]
    wait_for(lambda: cp.operation(operation_id, headers)["status"] == "AWAITING_CONFIRMATION", 180,
             "the move's preview")
    steps = {s["name"]: s for s in cp.operation(operation_id, headers)["steps"]}
    assert steps["place"]["result"] == {"placement": "dedicated:dc1"}
    operator = cp.platform_user("operator")
    with cp.client() as client:
        assert client.post(f"/v1/operations/{operation_id}/confirm", headers=operator).status_code == 202

    # Kill the worker while the dedicated stack is being created; a new worker finishes the move.
    wait_for(lambda: cp.scalar("SELECT current_step FROM operations WHERE id = %s", operation_id) == "stack_up"
             and cp.scalar("SELECT count(*) FROM stack_events WHERE operation_id = %s AND step = 'stack_up'",
                           operation_id) >= 3, 180, "the dedicated stack's update to start", interval=0.05)
    cp.kill(cp.workers[0])
    assert running_pods(clusters[source], slug) == 1, "the tenant lost its running environment mid-move"
    cp.start_worker()
    operation = cp.wait_operation(operation_id, headers, timeout=RESUME_TIMEOUT)
    assert operation["status"] == "SUCCEEDED", f"{operation['error']}\n{cp.logs()}"
    assert [s["name"] for s in operation["steps"]][-2:] == ["activate", "release_old_placement"]

    tenant = cp.row("SELECT status, tier, placement FROM tenants WHERE id = %s", tenant_id)
    assert tenant == ("ACTIVE", "business", "dedicated:dc1")
    assert tenant_namespaces(clusters["dc1"], slug) == sorted(namespace_name(slug, e) for e in ("dev", "staging", "prod"))
    wait_for(lambda: tenant_namespaces(clusters[source], slug) == [], 120, "the shared namespaces to go")
    assert [name for name in cp.stack_list() if slug in name] == [f"dedicated-{slug}"]
    with psycopg.connect(cp.tenant_database_url, autocommit=True) as conn:
        kept = conn.execute(f'SELECT note FROM "{schema}".kept').fetchall()
    assert kept == [("written before the move",)]
    # The dedicated stack took the role over with the password the shared servers used.
    assert database_credentials(slug, "prod")["password"] == password_in_use
    with psycopg.connect(cp.tenant_database_url, user=schema, password=password_in_use, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (schema,)
    assert cp.scalar("SELECT baseline_stack FROM clusters WHERE name = 'dc1'") == f"dedicated-{slug}"
    moved = cp.stack_operations().factory.read_stack_config(f"dedicated-{slug}")
    assert moved["cameleer:driftCorrection"] == "auto" and moved["cameleer:cluster"] == "dc1"
    assert cp.scalar("SELECT tier FROM licenses WHERE tenant_id = %s AND superseded_at IS NULL", tenant_id) == "business"
