"""The cluster registry (/v1/clusters and `cameleer-clusters`) on the real PostgreSQL and OpenBao;
`verify` reaches the real local API server ($KUBECONFIG)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from api.auth.roles import TenantRole
from api.auth.users import create_user
from api.clusters.cli import app as cli_app
from api.clusters.credentials import ClusterCredentials, reference
from api.db.models import Membership, Tenant, TenantStatus
from api.db.session import Scope
from api.settings import libpq_dsn
from api.vault import VaultConnection
from tests.api import vault_support
from tests.api.conftest import STRONG_PASSWORD, login

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG")
    assert path, "KUBECONFIG unset: source .cameleer/services.env (the local cluster)"
    return Path(path).read_text()


@pytest.fixture
def credentials() -> ClusterCredentials:
    vault = vault_support.client()
    return ClusterCredentials(VaultConnection(vault.url, vault.token))


@pytest.fixture
def cluster_name(credentials: ClusterCredentials) -> Iterator[Callable[[], str]]:
    """New cluster names; whatever the test left in OpenBao under them is deleted afterwards."""
    names: list[str] = []

    def new() -> str:
        names.append(f"t-{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield new
    for name in names:
        credentials.delete(reference(name))


def body(name: str, kubeconfig: str, /, **overrides) -> dict:
    return {"name": name, "kind": "shared", "region": "eu", "cpu": "64", "memory": "256Gi", "tenant_slots": 40,
            "kubeconfig": kubeconfig, **overrides}


def unreachable(kubeconfig: str) -> str:
    """The kubeconfig with its server moved to a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    document = yaml.safe_load(kubeconfig)
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    return yaml.safe_dump(document)


def secret_parts(kubeconfig: str) -> list[str]:
    """The credentials of the kubeconfig's user: what must never show up outside OpenBao."""
    user = yaml.safe_load(kubeconfig)["users"][0]["user"]
    parts = [value for value in user.values() if isinstance(value, str) and len(value) > 16]
    assert parts, "the local kubeconfig has no embedded credentials to look for"
    return parts


def system_rows(database, query: str, *params) -> list[tuple]:
    with psycopg.connect(libpq_dsn(database.url(database.system))) as conn:
        return conn.execute(query, params).fetchall()


def audit_actions(database, name: str) -> list[str]:
    return [action for (action,) in system_rows(
        database, "SELECT action FROM audit_log WHERE resource = %s ORDER BY id", f"cluster:{name}")]


def add_tenant(services, placement: str, status: TenantStatus = TenantStatus.ACTIVE) -> uuid.UUID:
    slug = f"c-{uuid.uuid4().hex[:10]}"
    with services.db.transaction(Scope.system()) as session:
        tenant = Tenant(slug=slug, name=f"Org {slug}", tier="low", status=status.value, placement=placement)
        session.add(tenant)
    return tenant.id


def set_status(services, tenant_id: uuid.UUID, status: TenantStatus) -> None:
    with services.db.transaction(Scope.system()) as session:
        session.get(Tenant, tenant_id).status = status.value


def register(client, headers, name, kubeconfig, /, **overrides):
    return client.post("/v1/clusters", json=body(name, kubeconfig, **overrides), headers=headers)


# -- register ------------------------------------------------------------------------------


def test_register_keeps_the_kubeconfig_in_openbao_and_only_its_reference_in_the_database(
        client, operator_headers, database, credentials, cluster_name, kubeconfig):
    name = cluster_name()
    response = register(client, operator_headers, name, kubeconfig)  # verify: the real local API server
    assert response.status_code == 201, response.text
    cluster = response.json()
    assert cluster["credentials_ref"] == f"platform/clusters/{name}"
    assert (cluster["kind"], cluster["state"], cluster["baseline_stack"]) == ("shared", "active", f"shared-{name}")
    assert (cluster["capacity_cpu_m"], cluster["capacity_memory_mi"], cluster["tenant_slots"]) == (64000, 262144, 40)
    assert cluster["tenants"] == 0 and "kubeconfig" not in cluster
    assert credentials.read(cluster["credentials_ref"]) == kubeconfig

    [(row,)] = system_rows(database, "SELECT row_to_json(c)::text FROM clusters c WHERE name = %s", name)
    audit = system_rows(database, "SELECT details::text FROM audit_log WHERE resource = %s", f"cluster:{name}")
    for part in secret_parts(kubeconfig) + ["current-context"]:
        assert part not in row and part not in response.text
        assert all(part not in details for (details,) in audit)
    assert audit_actions(database, name) == ["cluster.registered"]


def test_registering_again_changes_nothing_and_a_new_kubeconfig_is_a_rotation(
        client, operator_headers, database, credentials, cluster_name, kubeconfig):
    name = cluster_name()
    first = register(client, operator_headers, name, kubeconfig, verify=False)
    assert first.status_code == 201, first.text
    again = register(client, operator_headers, name, kubeconfig, verify=False)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert audit_actions(database, name) == ["cluster.registered"]

    rotated = kubeconfig + "\n# rotated\n"
    for _ in range(2):
        response = register(client, operator_headers, name, rotated, verify=False)
        assert response.status_code == 200, response.text
    assert credentials.read(reference(name)) == rotated
    assert audit_actions(database, name) == ["cluster.registered", "cluster.credentials_rotated"]


def test_the_same_name_with_another_kind_or_capacity_is_a_conflict(client, operator_headers, cluster_name, kubeconfig):
    name = cluster_name()
    assert register(client, operator_headers, name, kubeconfig, verify=False).status_code == 201
    kind = register(client, operator_headers, name, kubeconfig, verify=False, kind="dedicated", tenant_slots=1)
    assert kind.status_code == 409 and kind.json()["type"] == "/problems/cluster-conflict"
    assert "kind" in kind.json()["fields"]
    capacity = register(client, operator_headers, name, kubeconfig, verify=False, cpu="32")
    assert capacity.status_code == 409 and capacity.json()["fields"] == ["capacity_cpu_m"]


def test_an_unreachable_cluster_is_refused_and_nothing_is_stored(
        client, operator_headers, database, credentials, cluster_name, kubeconfig):
    name, moved = cluster_name(), unreachable(kubeconfig)
    response = register(client, operator_headers, name, moved)
    assert response.status_code == 422, response.text
    problem = response.json()
    server = yaml.safe_load(moved)["clusters"][0]["cluster"]["server"]
    assert problem["type"] == "/problems/cluster-unreachable" and server in problem["detail"]
    assert all(part not in response.text for part in secret_parts(kubeconfig))
    assert credentials.read(reference(name)) is None
    assert system_rows(database, "SELECT 1 FROM clusters WHERE name = %s", name) == []
    assert client.get(f"/v1/clusters/{name}", headers=operator_headers).status_code == 404


@pytest.mark.parametrize(("content", "reason"), [
    ("clusters: [unclosed", "not YAML"),
    ("apiVersion: v1\nkind: Config\n", "no current-context"),
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: []\n", "no cluster named"),
])
def test_a_kubeconfig_that_cannot_be_used_is_refused(client, operator_headers, cluster_name, content, reason):
    response = register(client, operator_headers, cluster_name(), content, verify=False)
    assert response.status_code == 422 and response.json()["type"] == "/problems/invalid-kubeconfig"
    assert reason in response.json()["detail"]


@pytest.mark.parametrize("overrides", [
    {"name": "Bad_Name"}, {"cpu": "lots"}, {"memory": "12GB"}, {"tenant_slots": 0},
    {"kind": "dedicated", "tenant_slots": 2}, {"tenant_slots": None},
])
def test_bad_declarations_are_refused(client, operator_headers, cluster_name, kubeconfig, overrides):
    response = register(client, operator_headers, cluster_name(), kubeconfig, verify=False, **overrides)
    assert response.status_code == 422, response.text
    assert response.json()["type"] in ("/problems/invalid-cluster", "/problems/validation-error")


def test_a_dedicated_cluster_has_one_slot_and_no_baseline_until_its_tenant(client, operator_headers, cluster_name,
                                                                          kubeconfig):
    name = cluster_name()
    response = register(client, operator_headers, name, kubeconfig, verify=False, kind="dedicated", tenant_slots=None)
    assert response.status_code == 201, response.text
    assert (response.json()["tenant_slots"], response.json()["baseline_stack"]) == (1, None)
    more = client.patch(f"/v1/clusters/{name}", json={"tenant_slots": 2}, headers=operator_headers)
    assert more.status_code == 422 and more.json()["type"] == "/problems/invalid-cluster"


# -- changes -------------------------------------------------------------------------------


def test_capacity_changes_are_audited_once(client, operator_headers, database, cluster_name, kubeconfig):
    name = cluster_name()
    register(client, operator_headers, name, kubeconfig, verify=False)
    for _ in range(2):
        response = client.patch(f"/v1/clusters/{name}", json={"cpu": "96", "memory": "384Gi", "region": "eu-west"},
                                headers=operator_headers)
        assert response.status_code == 200, response.text
    assert (response.json()["capacity_cpu_m"], response.json()["capacity_memory_mi"]) == (96000, 393216)
    assert response.json()["tenant_slots"] == 40 and response.json()["region"] == "eu-west"
    assert audit_actions(database, name) == ["cluster.registered", "cluster.capacity_changed"]
    [(details,)] = system_rows(database, "SELECT details FROM audit_log WHERE resource = %s AND action = %s",
                               f"cluster:{name}", "cluster.capacity_changed")
    assert details["changes"]["capacity_cpu_m"] == [64000, 96000]


def test_cordon_uncordon_and_drain_change_the_state_and_are_audited(
        client, operator_headers, database, services, cluster_name, kubeconfig):
    name = cluster_name()
    register(client, operator_headers, name, kubeconfig, verify=False)
    tenant = add_tenant(services, f"shared:{name}")
    for action, state in [("cordon", "cordoned"), ("cordon", "cordoned"), ("uncordon", "active")]:
        response = client.post(f"/v1/clusters/{name}/{action}", headers=operator_headers)
        assert response.status_code == 200 and response.json()["state"] == state
    drained = client.post(f"/v1/clusters/{name}/drain", headers=operator_headers)
    assert drained.status_code == 200, drained.text
    assert drained.json()["cluster"]["state"] == "draining" and drained.json()["cluster"]["tenants"] == 1
    assert [t["id"] for t in drained.json()["tenants"]] == [str(tenant)]
    assert audit_actions(database, name) == ["cluster.registered", "cluster.cordoned", "cluster.uncordoned",
                                             "cluster.draining"]
    set_status(services, tenant, TenantStatus.DELETED)


def test_removal_is_refused_while_a_tenant_lives_there(
        client, operator_headers, database, services, credentials, cluster_name, kubeconfig):
    name, other = cluster_name(), cluster_name()
    register(client, operator_headers, name, kubeconfig, verify=False)
    shared = add_tenant(services, f"shared:{name}")
    dedicated = add_tenant(services, f"dedicated:{name}", TenantStatus.FAILED)
    add_tenant(services, f"shared:x{name}")  # another cluster whose name ends like this one's
    add_tenant(services, f"shared:{name}", TenantStatus.DELETED)

    refused = client.delete(f"/v1/clusters/{name}", headers=operator_headers)
    assert refused.status_code == 409 and refused.json()["type"] == "/problems/cluster-not-empty"
    assert refused.json()["tenants"] == 2
    listed = {c["name"]: c["tenants"] for c in client.get("/v1/clusters", headers=operator_headers).json()}
    assert listed[name] == 2 and other not in listed

    set_status(services, shared, TenantStatus.DELETED)
    set_status(services, dedicated, TenantStatus.DELETED)
    assert client.delete(f"/v1/clusters/{name}", headers=operator_headers).status_code == 204
    assert client.get(f"/v1/clusters/{name}", headers=operator_headers).status_code == 404
    assert client.delete(f"/v1/clusters/{name}", headers=operator_headers).status_code == 404
    assert credentials.read(reference(name)) is None
    assert audit_actions(database, name)[-1] == "cluster.removed"


# -- who may ------------------------------------------------------------------------------


def tenant_owner_headers(client, services) -> dict[str, str]:
    email = f"owner-{uuid.uuid4().hex[:8]}@clusters.example.com"
    tenant = add_tenant(services, "shared:eu1")
    with services.db.transaction(Scope.system()) as session:
        owner = create_user(session, email, STRONG_PASSWORD)
        session.add(Membership(user_id=owner.id, tenant_id=tenant, role=TenantRole.OWNER.value))
    return login(client, email)


def test_auditors_read_and_only_operators_write(client, operator_headers, auditor_headers, services, cluster_name,
                                                kubeconfig):
    name = cluster_name()
    register(client, operator_headers, name, kubeconfig, verify=False)
    assert name in {c["name"] for c in client.get("/v1/clusters", headers=auditor_headers).json()}
    assert client.get(f"/v1/clusters/{name}", headers=auditor_headers).status_code == 200
    owner = tenant_owner_headers(client, services)
    writes = [("POST", "/v1/clusters", body(cluster_name(), kubeconfig, verify=False)),
              ("PATCH", f"/v1/clusters/{name}", {"cpu": "1"}), ("POST", f"/v1/clusters/{name}/cordon", None),
              ("POST", f"/v1/clusters/{name}/drain", None), ("DELETE", f"/v1/clusters/{name}", None)]
    for method, path, payload in writes:
        for headers in (auditor_headers, owner):
            response = client.request(method, path, json=payload, headers=headers)
            assert response.status_code == 403 and response.json()["type"] == "/problems/forbidden", (method, path)
    for path in ("/v1/clusters", f"/v1/clusters/{name}"):
        assert client.get(path, headers=owner).status_code == 403
    assert client.get("/v1/clusters").status_code == 401
    assert client.get(f"/v1/clusters/{name}", headers=operator_headers).json()["state"] == "active"


def test_the_openapi_document_describes_the_problems(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"409", "422", "403"} <= set(paths["/v1/clusters"]["post"]["responses"])
    assert "cluster-not-empty" in paths["/v1/clusters/{name}"]["delete"]["responses"]["409"]["description"]


# -- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli_env(services) -> dict[str, str]:
    settings = services.settings
    return {"CAMELEER_DATABASE_URL": settings.app_dsn(), "CAMELEER_DATABASE_SYSTEM_URL": settings.system_dsn(),
            "CAMELEER_ACTOR": "ops@test"}


def run_cli(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli_app, list(args), env=env)


def test_the_cli_registers_changes_and_removes(cli_env, database, services, credentials, cluster_name, kubeconfig,
                                               tmp_path):
    name, file = cluster_name(), tmp_path / "kubeconfig"
    file.write_text(kubeconfig)
    registered = run_cli(cli_env, "register", name, "--kind", "shared", "--region", "eu", "--cpu", "8",
                         "--memory", "32Gi", "--slots", "4", "--kubeconfig", str(file))
    assert registered.exit_code == 0, registered.output
    assert credentials.read(reference(name)) == kubeconfig

    assert run_cli(cli_env, "set-capacity", name, "--slots", "6").exit_code == 0
    assert run_cli(cli_env, "cordon", name).exit_code == 0
    tenant = add_tenant(services, f"shared:{name}")
    drained = run_cli(cli_env, "drain", name, "--json")
    assert drained.exit_code == 0 and [t["id"] for t in json.loads(drained.stdout)] == [str(tenant)]
    [shown] = [c for c in json.loads(run_cli(cli_env, "list", "--json").stdout) if c["name"] == name]
    assert (shown["state"], shown["tenant_slots"], shown["tenants"]) == ("draining", 6, 1)
    assert shown["capacity_cpu_m"] == 8000

    refused = run_cli(cli_env, "remove", name)
    assert refused.exit_code == 1 and "still holds 1 tenant" in refused.stderr
    set_status(services, tenant, TenantStatus.DELETED)
    assert run_cli(cli_env, "remove", name).exit_code == 0
    assert credentials.read(reference(name)) is None
    assert audit_actions(database, name) == ["cluster.registered", "cluster.capacity_changed", "cluster.cordoned",
                                             "cluster.draining", "cluster.removed"]
    [(actor,)] = system_rows(database, "SELECT DISTINCT actor FROM audit_log WHERE resource = %s", f"cluster:{name}")
    assert actor == "ops@test"


def test_the_cli_exits_1_with_a_clear_message(cli_env, cluster_name, kubeconfig, tmp_path):
    name, bad, unused = cluster_name(), tmp_path / "bad", cluster_name()
    bad.write_text("clusters: [unclosed")
    declared = ["--kind", "shared", "--region", "eu", "--cpu", "8", "--memory", "32Gi", "--slots", "4"]
    cases = [
        (["show", name], "does not exist"),
        (["cordon", name], "does not exist"),
        (["register", unused, *declared, "--kubeconfig", str(bad)], "not YAML"),
        (["register", unused, *declared, "--kubeconfig", str(tmp_path / "missing")], "cannot read the kubeconfig"),
        (["register", unused, "--kind", "dedicated", "--region", "eu", "--cpu", "8", "--memory", "32Gi", "--slots",
          "3", "--kubeconfig", str(bad)], "one tenant slot"),
    ]
    for args, message in cases:
        result = run_cli(cli_env, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


def test_the_cli_runs_as_a_module(cli_env, client, operator_headers, cluster_name, kubeconfig):
    name = cluster_name()
    register(client, operator_headers, name, kubeconfig, verify=False)
    env = {**os.environ, **cli_env, "PYTHONPATH": str(REPO_ROOT)}
    listed = subprocess.run([sys.executable, "-m", "api.clusters.cli", "show", name, "--json"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["name"] == name
    missing = subprocess.run([sys.executable, "-m", "api.clusters.cli", "remove", cluster_name()], env=env,
                             capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_the_app_role_may_read_the_registry_but_not_change_it(client, operator_headers, database, cluster_name,
                                                               kubeconfig):
    name = cluster_name()
    register(client, operator_headers, name, kubeconfig, verify=False)
    with psycopg.connect(libpq_dsn(database.url(database.app))) as conn:
        assert conn.execute("SELECT state FROM clusters WHERE name = %s", (name,)).fetchall() == [("active",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE clusters SET state = 'cordoned' WHERE name = %s", (name,))
