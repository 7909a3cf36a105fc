"""The automation layer and the `cameleer` CLI against the real engine and API server.

Each test gets its own project copy (tests/integration/programs/automation_tenant), its
own state backend and a stack `tenant-<unique>`; every preview and update runs the
project's real CrossGuard pack (policy/). The objects are typed pulumi-kubernetes
resources (`kubernetes:apps/v1:Deployment`, ...), so changes and drift are reported at the
objects' own fields (`spec.replicas`, `data.greeting`). Out-of-band changes are made with
`kubectl`, the client people use; the Kubernetes Python client only reads.

Needs the local services (scripts/services.sh start): a missing CLI, API server or
database fails these tests; nothing here skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as kube_client

from automation.errors import ErrorKind, OperationError
from automation.history import UpdateMetadata
from automation.locks import ProcessState, probe_process
from automation.operations import StackOperations
from automation.settings import Settings
from automation.workspace import PassphraseSecrets, Secret

from .conftest import PROGRAMS, REPO_ROOT

pytestmark = pytest.mark.engine

PROGRAM = PROGRAMS / "automation_tenant"
CLI_TIMEOUT = 600


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def backend_url(request, tmp_path) -> str:
    """A fresh file backend, or (parametrized "postgres") the shared PostgreSQL one."""
    if getattr(request, "param", "file") == "postgres":
        return request.getfixturevalue("state_postgres_url")
    state = tmp_path / "state"
    state.mkdir()
    return f"file://{state}"


both_backends = pytest.mark.parametrize("backend_url", ["file", "postgres"], indirect=True)


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the test program whose Pulumi.yaml names this interpreter's virtualenv."""
    target = tmp_path / "project"
    shutil.copytree(PROGRAM, target)
    settings = yaml.safe_load((target / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = sys.prefix
    (target / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    (target / "config").mkdir()
    return target


@pytest.fixture
def env(project, tmp_path, backend_url, kubeconfig, pulumi_bin) -> dict[str, str]:
    """The environment of the CLI under test (and of the in-process StackOperations)."""
    return {
        **os.environ,
        "CAMELEER_PROJECT_DIR": str(project),
        "CAMELEER_DATA_DIR": str(tmp_path / "data"),
        "CAMELEER_BACKEND_URL": backend_url,
        "CAMELEER_PULUMI_ROOT": str(pulumi_bin.parent.parent),
        "CAMELEER_POLICY_PACKS": str(REPO_ROOT / "policy"),
        "CAMELEER_ACTOR": "integration-test",
        "PULUMI_CONFIG_PASSPHRASE": "automation-engine-test",
        "KUBECONFIG": kubeconfig,
        "PYTHONPATH": str(REPO_ROOT),
    }


@pytest.fixture
def ops(env) -> StackOperations:
    return StackOperations(Settings.from_env(env))


@pytest.fixture
def apps(kubeconfig):
    from kubernetes import config

    return kube_client.AppsV1Api(config.new_client_from_config(config_file=kubeconfig))


@pytest.fixture
def tenant(ops, unique_name, kube_core):
    """A provisioned stack `tenant-<unique>` (replicas 1, greeting hello); destroyed after."""
    stack = f"tenant-{unique_name}"
    result = ops.provision(stack, {"tier": "low", "replicas": 1, "greeting": "hello"},
                           UpdateMetadata("integration-test", "provision for a test", kind="signup"))
    assert result.resource_changes.get("create", 0) >= 3
    yield stack
    try:
        ops.destroy(stack, UpdateMetadata("integration-test", "test cleanup"))
    finally:
        namespace = f"auto-{unique_name}"
        try:
            kube_core.delete_namespace(namespace)
        except Exception:  # noqa: BLE001 - already gone is the normal case
            pass


def cameleer(env, *args: str, check_json: bool = True) -> tuple[int, dict | None, str]:
    """Run the CLI as a user would; returns (exit code, JSON document or None, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "automation.cli", *args], env=env, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT)
    doc = None
    if "--json" in args and check_json:
        assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr}"
        doc = json.loads(proc.stdout)
    return proc.returncode, doc, proc.stderr


def replicas(apps, namespace: str) -> int:
    return apps.read_namespaced_deployment("server", namespace).spec.replicas


def greeting(kube_core, namespace: str) -> str:
    return kube_core.read_namespaced_config_map("settings", namespace).data["greeting"]


def part_of(kube_core, namespace: str) -> str:
    return kube_core.read_namespace(namespace).metadata.labels["app.kubernetes.io/part-of"]


def paths_by_resource(drift_doc: dict) -> dict[str, dict[str, tuple]]:
    [stack] = drift_doc["stacks"]
    return {
        resource["name"]: {p["path"]: (p.get("old"), p.get("new")) for p in resource["properties"]}
        for resource in stack["drift"]["resources"]
    }


# --------------------------------------------------------------------------- tests

def test_provision_records_who_and_why_and_lists_the_stack(ops, tenant, env, apps, unique_name):
    namespace = f"auto-{unique_name}"
    assert replicas(apps, namespace) == 1

    code, doc, err = cameleer(env, "history", unique_name, "--json")
    assert code == 0, err
    [entry] = doc["entries"]
    assert (entry["kind"], entry["result"]) == ("update", "succeeded")
    assert (entry["actor"], entry["reason"], entry["change_kind"]) == (
        "integration-test", "provision for a test", "signup")
    assert entry["environment"]["ci.system"] == "cameleer"
    assert entry["environment"]["pulumi.flag.policy-pack"] == "set"
    assert entry["resource_changes"]["create"] >= 3

    code, doc, err = cameleer(env, "stacks", "--json")
    assert code == 0, err
    [info] = [s for s in doc["stacks"] if s["name"] == tenant]
    assert (info["kind"], info["slug"], info["tier"]) == ("tenant", unique_name, "low")
    assert info["last_result"] == "succeeded" and info["last_reason"] == "provision for a test"


@both_backends
def test_history_read_from_the_backend_is_what_the_engine_prints(ops, tenant, unique_name, monkeypatch):
    """Pins the backend layout automation.history_reader reads (not a public API of the
    engine), and the API's stack driver serves a tenant's history without starting it."""
    import uuid

    from api.stacks.automation_adapter import AutomationStackDriver
    from api.stacks.driver import TenantRef

    ops.refresh(tenant, UpdateMetadata("integration-test", "a second entry, of another kind"))
    ops.provision(tenant, {"tier": "low", "replicas": 1, "greeting": "hello again"},
                  UpdateMetadata("integration-test", "a third entry", kind="operator"))
    engine = ops.history(tenant)  # `pulumi stack history --json`
    assert [(h.kind, h.version) for h in engine] == [("update", 3), ("refresh", 2), ("update", 1)]

    def no_engine(*args, **kwargs):
        raise AssertionError(f"the engine was started: {args}")

    monkeypatch.setattr(ops.factory, "run_cli", no_engine)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert ops.recorded_history(tenant) == engine
    assert ops.recorded_history(tenant, limit=1) == engine[:1]
    assert ops.recorded_history(f"tenant-never-{unique_name}") == []

    driver = AutomationStackDriver()
    driver.__dict__["_ops"] = ops  # the driver's engine layer, over this test's backend
    served = driver.history(TenantRef(id=uuid.uuid4(), slug=unique_name, placement="shared"))
    assert [(u.stack, u.kind, u.result, u.started_at, u.ended_at, u.message, u.resource_changes) for u in served] == [
        (tenant, h.kind, h.result, h.started_at, h.ended_at, h.message, dict(h.resource_changes)) for h in engine]


def test_preview_shows_property_changes_and_applies_nothing(tenant, env, ops, kube_core, unique_name, project):
    namespace = f"auto-{unique_name}"
    settings_file = ops.factory.config_file(tenant)
    assert settings_file.is_relative_to(Path(env["CAMELEER_DATA_DIR"])), "service stacks keep settings out of the tree"
    assert not list((project / "config").iterdir())
    before = settings_file.read_text()

    code, doc, err = cameleer(env, "preview", unique_name, "--set", "greeting=bonjour", "--set", "replicas=2",
                              "--json")
    assert code == 0, err
    assert doc["schema"] == "cameleer.preview/v1" and doc["ok"] is True
    changed = {c["name"]: c for c in doc["changes"] if c["op"] != "same"}
    assert set(changed) == {"settings", "server"}
    assert changed["settings"]["op"] == "update"
    assert changed["settings"]["properties"] == [
        {"path": "data.greeting", "kind": "update", "replace": False, "old": "hello", "new": "bonjour"}]
    assert {p["path"]: (p["old"], p["new"]) for p in changed["server"]["properties"]} == {
        "spec.replicas": (1, 2)}
    assert "cameleer-guardrails" in " ".join(doc["policy"]["packs"])
    # Nothing applied, nothing persisted.
    assert greeting(kube_core, namespace) == "hello"
    assert settings_file.read_text() == before


def test_policy_violation_stops_preview_and_update(ops, tenant, env, apps, unique_name):
    namespace = f"auto-{unique_name}"
    code, doc, err = cameleer(env, "preview", tenant, "--set", "image=ghcr.io/cameleer/server:latest", "--json")
    assert code == 1, err
    assert doc["ok"] is False and doc["error"]["kind"] == "policy"
    violations = doc["error"]["policy_violations"]
    pinned = [v for v in violations if v["policy"] == "pinned-images"]
    assert pinned and pinned[0]["enforcement_level"] == "mandatory"
    assert "not pinned by digest" in pinned[0]["message"]
    assert pinned[0]["urn"].endswith("::server")

    with pytest.raises(OperationError) as caught:
        ops.up(tenant, UpdateMetadata("integration-test", "try an unpinned image"),
               config={"image": "ghcr.io/cameleer/server:latest"})
    assert caught.value.kind is ErrorKind.POLICY and not caught.value.retryable
    image = apps.read_namespaced_deployment("server", namespace).spec.template.spec.containers[0].image
    assert "@sha256:" in image


@both_backends
def test_drift_is_found_exactly_then_fixed_and_recorded(tenant, env, apps, kube_core, kubectl, unique_name):
    namespace = f"auto-{unique_name}"
    kubectl("-n", namespace, "scale", "deployment", "server", "--replicas=3")
    kubectl("-n", namespace, "patch", "configmap", "settings", "--type", "merge",
            "-p", json.dumps({"data": {"greeting": "tampered"}}))
    kubectl("label", "--overwrite", "namespace", namespace, "app.kubernetes.io/part-of=someone-else")

    code, doc, err = cameleer(env, "drift", unique_name, "--json")
    assert code == 2, err
    assert doc["schema"] == "cameleer.drift/v1" and doc["exit_code"] == 2
    assert doc["summary"]["drifted"] == 1
    assert paths_by_resource(doc) == {
        "server": {"spec.replicas": (1, 3)},
        "settings": {"data.greeting": ("hello", "tampered")},
        "namespace": {'metadata.labels["app.kubernetes.io/part-of"]': ("cameleer-tests", "someone-else")},
    }
    # Detection applied nothing.
    assert replicas(apps, namespace) == 3 and greeting(kube_core, namespace) == "tampered"
    assert part_of(kube_core, namespace) == "someone-else"

    code, doc, err = cameleer(env, "drift", unique_name, "--fix", "--json")
    assert code == 0, err
    [outcome] = doc["stacks"]
    assert outcome["status"] == "fixed"
    assert outcome["verification"]["drifted"] is False
    assert replicas(apps, namespace) == 1 and greeting(kube_core, namespace) == "hello"
    assert part_of(kube_core, namespace) == "cameleer-tests"

    code, doc, err = cameleer(env, "drift", tenant, "--json")
    assert code == 0, err
    assert [s["status"] for s in doc["stacks"]] == ["clean"]

    code, doc, err = cameleer(env, "history", unique_name, "--limit", "1", "--json")
    assert code == 0, err
    [latest] = doc["entries"]
    assert (latest["kind"], latest["result"], latest["reason"]) == ("update", "succeeded", "drift correction")
    assert latest["actor"] == "integration-test" and latest["change_kind"] == "drift-correction"
    assert "pulumi.flag.refresh" in latest["environment"]


def _session_processes(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:  # field 6 of /proc/<pid>/stat: session id
            pids.append(int(entry.name))
    return pids


def _running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if probe_process(pid).state is ProcessState.RUNNING]


def _kill_session(sid: int) -> set[int]:
    """SIGKILL every process of session `sid` until none is left running (a process may
    still be spawning children while the first ones die); returns every pid killed."""
    killed: set[int] = set()
    deadline = time.time() + 30
    while True:
        alive = [pid for pid in _session_processes(sid) if probe_process(pid).state is ProcessState.RUNNING]
        if not alive:
            return killed
        assert time.time() < deadline, f"processes of the killed session survive: {alive}"
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed.update(alive)
        time.sleep(0.1)


@both_backends
def test_an_update_killed_midway_is_recovered_by_the_next_operation(tenant, env, ops, tmp_path, apps,
                                                                     unique_name):
    marker = tmp_path / "hold-started"
    output = tmp_path / "killed-up.log"
    # Only the CLI is killed, like a crash: its engine (in a session of its own) and the
    # engine's plugins must not outlive it.
    with open(output, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "automation.cli", "up", tenant, "--reason", "an update that dies",
             "--set", "holdSeconds=300", "--set", f"holdMarker={marker}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.time() + 300
        while not marker.exists():
            assert proc.poll() is None, f"the update ended before the hold resource started:\n{output.read_text()}"
            assert time.time() < deadline, "the hold resource never started"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    locks = ops._lock_store().list(tenant)
    assert len(locks) == 1, "the killed engine left no lock: nothing to recover"
    engine = locks[0].pid
    deadline = time.time() + 15
    while _running(_session_processes(engine)) and time.time() < deadline:
        time.sleep(0.1)
    survivors = _running(_session_processes(engine))
    _kill_session(engine)
    assert survivors == [], "processes of the killed CLI's engine outlived it"
    assert probe_process(engine).state is not ProcessState.RUNNING

    events = []
    result = ops.up(tenant, UpdateMetadata("integration-test", "after the crash"),
                    config={"holdSeconds": 0}, on_event=events.append)
    assert result.recovery is not None and result.recovery.locks_removed
    assert [p.type for p in result.recovery.pending_operations] == ["creating"]
    assert result.recovery.pending_operations[0].urn.endswith("::hold")
    assert any(e.type == "recovery" and "stale lock" in (e.message or "") for e in events)
    assert ops._lock_store().list(tenant) == []
    assert replicas(apps, f"auto-{unique_name}") == 1

    kinds = [(h.kind, h.reason) for h in ops.history(tenant, limit=2)]
    assert kinds[0] == ("update", "after the crash")
    assert kinds[1][0] == "refresh" and kinds[1][1].startswith("recovery after an interrupted operation")



# --------------------------------------------------------------------------- the real tenant program

@pytest.fixture
def real_project(tmp_path) -> Path:
    """The project's own stack programs (stacks/), with settings files in a scratch directory."""
    project = tmp_path / "real-project"
    (project / "config").mkdir(parents=True)
    (project / "program").symlink_to(REPO_ROOT / "stacks", target_is_directory=True)
    settings = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    settings["main"] = "program/"
    settings["stackConfigDir"] = "config"
    settings["runtime"]["options"]["virtualenv"] = sys.prefix
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    return project


def test_a_real_tenant_stack_drifts_and_is_put_back(real_project, env, tmp_path, unique_name, apps, kube_core,
                                                     kubectl, shared_baseline):
    """stacks/ tenant program: 25-odd resources; a NetworkPolicy deleted and the server scaled
    out of band are both reported (delete / update) and both restored. Its pods name the
    shared tiers' PriorityClasses: the session's shared baseline provides them."""
    admin_dsn = os.environ.get("CAMELEER_POSTGRES_ADMIN_DSN")
    if not admin_dsn:
        pytest.fail("CAMELEER_POSTGRES_ADMIN_DSN is not set: run through scripts/test.sh (services.env)")
    ops = StackOperations(Settings.from_env({**env, "CAMELEER_PROJECT_DIR": str(real_project)}))
    stack = f"tenant-{unique_name}"
    namespace = f"tenant-{unique_name}-prod"
    config = {
        "slug": unique_name, "tier": "low", "environments": ["prod"], "suspended": False,
        "image": "ghcr.io/cameleer/server@sha256:" + "4f5e1c3b2a9d8e7f" * 4,
        "databaseEndpoint": "127.0.0.1:55432",
        "rolloutTimeout": "90s",
        "databaseAdminUrl": Secret(admin_dsn), "license": Secret("eyJhbGciOiJFZERTQSJ9.e30.c2ln"),
    }
    who = UpdateMetadata("integration-test", "real tenant program", kind="signup")
    created = ops.provision(stack, config, who)
    try:
        assert created.resource_changes["create"] >= 20
        assert not [v for v in created.policy_violations if v.mandatory]
        settings_file = ops.factory.config_file(stack)
        assert settings_file.exists() and admin_dsn not in settings_file.read_text(), "a secret was written in clear"

        [deployment] = apps.list_namespaced_deployment(namespace).items
        desired = deployment.spec.replicas
        kubectl("-n", namespace, "scale", "deployment", deployment.metadata.name, f"--replicas={desired + 3}")
        kubectl("-n", namespace, "delete", "networkpolicy", "allow-internet")

        drift = ops.check_drift(stack)
        by_op = {(r.op, r.type.rsplit(":", 1)[-1]) for r in drift.resources}
        assert by_op == {("delete", "NetworkPolicy"), ("update", "Deployment")}
        [scaled] = [r for r in drift.resources if r.op == "update"]
        assert [(p.path, p.old, p.new) for p in scaled.properties] == [
            ("spec.replicas", desired, desired + 3)]

        fixed = ops.correct_drift(stack, UpdateMetadata("integration-test", "drift correction",
                                                        kind="drift-correction"))
        assert fixed.resource_changes.get("create") == 1 and fixed.resource_changes.get("update") == 1
        assert not ops.check_drift(stack).drifted
        assert apps.read_namespaced_deployment(deployment.metadata.name, namespace).spec.replicas == desired
        kube_client.NetworkingV1Api(apps.api_client).read_namespaced_network_policy("allow-internet", namespace)
        assert [h.reason for h in ops.history(stack)] == ["drift correction", "real tenant program"]
    finally:
        ops.destroy(stack, UpdateMetadata("integration-test", "test cleanup"))


# --------------------------------------------------------------------------- drift at scale

FLEET_SIZE = 20


def test_drift_over_twenty_stacks_in_parallel_reports_each(ops, env, kube_core, kubectl, unique_name):
    """`drift --all --parallel 2` over 20 stacks: every stack reported, exactly the tampered
    ones drifted, exit 2; nothing is changed by the check."""
    from concurrent.futures import ThreadPoolExecutor

    stacks = [f"tenant-{unique_name}f{index:02d}" for index in range(FLEET_SIZE)]
    namespaces = {stack: f"auto-{stack.removeprefix('tenant-')}" for stack in stacks}
    metadata = UpdateMetadata("integration-test", "fleet for the drift test")

    def provision(stack: str) -> None:
        ops.provision(stack, {"tier": "low", "replicas": 1, "greeting": "hello"}, metadata)

    def destroy(stack: str) -> None:
        try:
            ops.destroy(stack, UpdateMetadata("integration-test", "test cleanup"))
        except OperationError:
            pass  # not provisioned: the assertion that failed says why

    tampered = stacks[3], stacks[11], stacks[17]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(provision, stacks))
        for stack in tampered:
            kubectl("-n", namespaces[stack], "patch", "configmap", "settings", "--type", "merge",
                    "-p", json.dumps({"data": {"greeting": "tampered"}}))

        code, doc, err = cameleer(env, "drift", "--all", "--parallel", "2", "--json")

        assert code == 2, err
        reported = {entry["stack"]: entry for entry in doc["stacks"]}
        assert set(stacks) <= set(reported), "every stack of the fleet is reported"
        drifted = {name for name in stacks if reported[name]["status"] == "drifted"}
        assert drifted == set(tampered)
        assert all(reported[name]["status"] == "clean" for name in set(stacks) - drifted)
        assert all(greeting(kube_core, namespaces[stack]) == "tampered" for stack in tampered)
    finally:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(destroy, stacks))


# --------------------------------------------------------------------------- secrets providers


def test_a_passphrase_stack_moves_to_its_own_transit_key(env, unique_name):
    settings = Settings.from_env(env)
    assert settings.vault_address, "VAULT_ADDR is not set: scripts/services.sh starts OpenBao"
    stack = f"tenant-{unique_name}"
    before = StackOperations(settings, secrets=PassphraseSecrets(settings.passphrase))  # how stacks were made
    before.factory.create_or_select(stack)
    config_file = str(before.factory.config_file(stack))
    before.factory.run_cli(["config", "set", "--secret", "cameleer:license", "the-license",
                            "--config-file", config_file], stack=stack)
    assert "encryptionsalt" in Path(config_file).read_text()

    ops = StackOperations(settings)
    try:
        assert ops.migrate_secrets(stack) == f"migrated to hashivault://cameleer-stack-{stack}"
        assert ops.migrate_secrets(stack) == "already on its own key"
        settings_file = yaml.safe_load(Path(config_file).read_text())
        assert settings_file["secretsprovider"] == f"hashivault://cameleer-stack-{stack}"
        assert "encryptionsalt" not in settings_file
        read = ops.factory.run_cli(["config", "get", "cameleer:license", "--config-file", config_file], stack=stack)
        assert read.stdout.strip() == "the-license"
        # Without the secrets server the value cannot be read: the passphrase opens nothing now.
        unreachable = StackOperations(settings.with_overrides(vault_address="http://127.0.0.1:9"))
        with pytest.raises(Exception, match="(?i)secrets manager|decrypt|connection refused"):
            unreachable.factory.run_cli(["config", "get", "cameleer:license", "--config-file", config_file],
                                        stack=stack)
    finally:
        assert ops.factory.remove_stack(stack) == f"cameleer-stack-{stack}"  # and its key with it
