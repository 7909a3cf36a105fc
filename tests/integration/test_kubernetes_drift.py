"""A real tenant stack on the real pulumi-kubernetes provider, edited out of band with
`kubectl` (the client people use), checked and corrected with the `cameleer` CLI as CI runs
it: each edit is reported at its exact property (exit 2), `--fix` restores it without an
errored resource or a replaced data object, a second check is clean (exit 0), and the
history records the correction.

Also on the cluster that runs pods: a rollout the quota refuses fails the update with the
quota named, and suspension leaves no pod while reactivation brings them back Ready.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from components import naming
from components.tenant_server import SERVER_NAME, SETTINGS_CONFIG_MAP

from .conftest import PINNED_IMAGE, REPO_ROOT, _SESSION_SLUGS, license_jwt

pytestmark = pytest.mark.engine

SLUG_PREFIX = "drift"
SERVER_SELECTOR = "app.kubernetes.io/name=" + SERVER_NAME
SECRETS_ADDRESS = "http://openbao.cameleer-platform.svc:8200"
CONTROL_PLANE_URL = "https://cameleer.example.com"


class Cli:
    """`cameleer` and `kubectl` as subprocesses, on a private backend and data directory."""

    def __init__(self, tmp_path: Path, kubeconfig: str, env: dict[str, str]):
        self.kubeconfig = kubeconfig
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ("PULUMI_CONFIG_PASSPHRASE_FILE", "CAMELEER_CONFIG_PASSPHRASE_FILE")}
        self.env.update(env)
        self.env.update({
            "CAMELEER_DATA_DIR": str(tmp_path / "data"),
            "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
            "CAMELEER_ACTOR": "drift-test",
        })
        (tmp_path / "state").mkdir()
        self.cameleer_bin = shutil.which("cameleer", path=self.env["PATH"])
        if not self.cameleer_bin:
            pytest.fail("the cameleer CLI is not on PATH (scripts/setup.sh installs it into .venv/bin)")

    def cameleer(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([self.cameleer_bin, *args], cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=600)
        if expect is not None and done.returncode != expect:
            pytest.fail(f"cameleer {' '.join(args)} exited {done.returncode}, expected {expect}:\n"
                        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def get(self, namespace: str | None, kind: str, name: str) -> dict:
        scope = ["-n", namespace] if namespace else []
        return json.loads(self.kubectl(*scope, "get", kind, name, "-o", "json"))

    def drift(self, stack: str, *, fix: bool = False, expect: int) -> dict:
        done = self.cameleer("drift", stack, *(["--fix"] if fix else []), "--json", expect=expect)
        return json.loads(done.stdout)

    def up_low_tenant(self, slug: str, tenant_database_url: str, reason: str) -> str:
        """`cameleer up --create` of a low-tier tenant with one environment; its stack name."""
        from psycopg.conninfo import conninfo_to_dict

        database = conninfo_to_dict(tenant_database_url)
        self.cameleer(
            "up", f"tenant-{slug}", "--create", "--reason", reason,
            "--set", f"slug={slug}", "--set", "tier=low", "--set", 'environments=["prod"]',
            "--set", f"image={PINNED_IMAGE}", "--set", "rolloutTimeout=60s",
            "--set", f"secretsAddress={SECRETS_ADDRESS}", "--set", f"controlPlaneUrl={CONTROL_PLANE_URL}",
            "--set", f"databaseEndpoint={database.get('host', '127.0.0.1')}:{database.get('port', 5432)}",
            "--set-secret", f"databaseAdminUrl={tenant_database_url}",
            "--set-secret", f"license={license_jwt(slug, 'low')}",
        )
        return f"tenant-{slug}"


def _drifted(report: dict) -> dict[str, set[str]]:
    """resource name -> the property paths (or the op, for whole-resource drift) reported."""
    [entry] = report["stacks"]
    resources = (entry["drift"] or {}).get("resources") or []
    return {r["name"]: {p["path"] for p in r["properties"]} or {r["op"]} for r in resources}


def _wait(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.5)


def _ready_pods(cli: Cli, namespace: str) -> int:
    pods = json.loads(cli.kubectl("-n", namespace, "get", "pods", "-l", SERVER_SELECTOR, "-o", "json"))["items"]
    return sum(1 for pod in pods
               if not pod["metadata"].get("deletionTimestamp")
               and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])))


def _pod_count(cli: Cli, namespace: str) -> int:
    return len(json.loads(cli.kubectl("-n", namespace, "get", "pods", "-l", SERVER_SELECTOR, "-o", "json"))["items"])


@pytest.fixture
def tenant_stack(tmp_path, engine_env, kubeconfig, tenant_database_url, shared_baseline, unique_name):
    """A low-tier tenant brought up with `cameleer up --create`; destroyed afterwards."""
    cli = Cli(tmp_path, kubeconfig, {k: v for k, v in engine_env.items() if k != "PATH"})
    # The pre-check observes the tenant schema through the stack's own admin.
    cli.env["CAMELEER_TENANT_DATABASE_ADMIN_URL"] = tenant_database_url
    slug = f"{SLUG_PREFIX}{unique_name[1:9]}"
    _SESSION_SLUGS.append(slug)
    stack = cli.up_low_tenant(slug, tenant_database_url, "drift test tenant")
    try:
        yield cli, stack, naming.namespace_name(slug, "prod")
    finally:
        cli.cameleer("destroy", stack, "--yes", "--reason", "drift test done")


def _check_and_fix(cli: Cli, stack: str, resource: str, expected: set[str]) -> None:
    """The edit is flagged by the pre-check and reported by the engine exactly where it was
    made, --fix corrects it with no replacement of a data object, and a second check is clean."""
    report = cli.drift(stack, expect=2)
    found = _drifted(report)
    assert found == {resource: expected}, found
    [entry] = report["stacks"]
    assert entry["checked_by"] == "engine", entry
    assert resource in {f["resource"] for f in entry["precheck"]["findings"]}, entry["precheck"]
    fixed = cli.drift(stack, fix=True, expect=0)
    [entry] = fixed["stacks"]
    assert entry["status"] == "fixed", entry
    correction = entry["correction"]["resource_changes"]
    assert "replace" not in correction and "delete" not in correction, correction
    _assert_clean_by_precheck(cli, stack)


def _assert_clean_by_precheck(cli: Cli, stack: str) -> None:
    report = cli.drift(stack, expect=0)
    assert _drifted(report) == {}
    [entry] = report["stacks"]
    assert entry["checked_by"] == "precheck", entry["engine_reason"]


def test_kubectl_edits_are_reported_exactly_and_corrected(tenant_stack):
    cli, stack, namespace = tenant_stack
    _wait(lambda: _ready_pods(cli, namespace) == 1, "the server's pod to be Ready")
    _assert_clean_by_precheck(cli, stack)

    # A label or annotation someone else adds on a field the program does not declare is no
    # drift, for the pre-check as for the engine.
    cli.kubectl("label", "namespace", namespace, "team.example.com/owner=payments", "--field-manager=payments-team")
    cli.kubectl("label", "namespace", namespace, "example.com/scratch=yes")
    cli.kubectl("-n", namespace, "annotate", "deployment", SERVER_NAME, "example.com/on-call=alice")
    _assert_clean_by_precheck(cli, stack)

    # 1. kubectl scale of the server.
    cli.kubectl("-n", namespace, "scale", "deployment", SERVER_NAME, "--replicas=3")
    _check_and_fix(cli, stack, "prod-server-deployment", {"spec.replicas"})
    assert cli.get(namespace, "deployment", SERVER_NAME)["spec"]["replicas"] == 1
    _wait(lambda: _pod_count(cli, namespace) == 1, "the extra pods to go")

    # 2. kubectl edit of the settings ConfigMap's data (a patch is what `edit` sends).
    uid = cli.get(namespace, "configmap", SETTINGS_CONFIG_MAP)["metadata"]["uid"]
    cli.kubectl("-n", namespace, "patch", "configmap", SETTINGS_CONFIG_MAP, "--type", "merge",
                "-p", json.dumps({"data": {"CAMELEER_RETENTION_DAYS": "365"}}))
    _check_and_fix(cli, stack, "prod-server-settings", {"data.CAMELEER_RETENTION_DAYS"})
    settings = cli.get(namespace, "configmap", SETTINGS_CONFIG_MAP)
    assert settings["data"]["CAMELEER_RETENTION_DAYS"] == "7"
    # The server is told where to log in to OpenBao and where the control plane is.
    assert (settings["data"]["CAMELEER_SECRETS_ADDRESS"], settings["data"]["CAMELEER_CONTROL_PLANE_URL"]) == (
        SECRETS_ADDRESS, CONTROL_PLANE_URL)
    assert settings["metadata"]["uid"] == uid  # corrected in place, never deleted

    # 3. kubectl label --overwrite of the Pod Security label.
    cli.kubectl("label", "--overwrite", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    _check_and_fix(cli, stack, "prod-namespace-namespace",
                   {'metadata.labels["pod-security.kubernetes.io/enforce"]'})
    labels = cli.get(None, "namespace", namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["team.example.com/owner"] == "payments"  # another field manager's label survives
    # Known upstream behaviour, pinned so an upgrade that changes it is noticed: before each
    # server-side apply the provider takes over the fields of every client-side `kubectl*`
    # manager (fixCSAFieldManagers, fluxcd/pkg/ssa matches manager names by prefix), so a
    # label added with plain `kubectl label` goes with the next update of that object.
    assert "example.com/scratch" not in labels

    # 4. kubectl patch of the quota.
    cli.kubectl("-n", namespace, "patch", "resourcequota", "tenant-quota", "--type", "merge",
                "-p", json.dumps({"spec": {"hard": {"pods": "100"}}}))
    before = cli.get(namespace, "resourcequota", "tenant-quota")["spec"]["hard"]
    _check_and_fix(cli, stack, "prod-namespace-quota", {"spec.hard.pods"})
    assert cli.get(namespace, "resourcequota", "tenant-quota")["spec"]["hard"]["pods"] != before["pods"]

    # 5. kubectl delete of a NetworkPolicy.
    cli.kubectl("-n", namespace, "delete", "networkpolicy", "allow-dns")
    _check_and_fix(cli, stack, "prod-network-allow-dns", {"delete"})
    cli.get(namespace, "networkpolicy", "allow-dns")

    # 6. kubectl delete of the whole Deployment: recreated and rolled out again.
    cli.kubectl("-n", namespace, "delete", "deployment", SERVER_NAME, "--wait=true")
    _check_and_fix(cli, stack, "prod-server-deployment", {"delete"})
    assert _ready_pods(cli, namespace) == 1  # the update awaited the rollout

    history = json.loads(cli.cameleer("history", stack, "--json").stdout)["entries"]
    corrections = [entry for entry in history if entry["change_kind"] == "drift-correction"]
    assert len(corrections) == 6 and all(e["result"] == "succeeded" for e in corrections)
    assert all(e["reason"] == "drift correction" for e in corrections)


def test_rollout_over_quota_fails_naming_the_quota(tenant_stack):
    cli, stack, namespace = tenant_stack
    # Room for exactly the running pod: a rolling update needs one more, which the quota refuses.
    cli.kubectl("-n", namespace, "patch", "resourcequota", "tenant-quota", "--type", "merge",
                "-p", json.dumps({"spec": {"hard": {"pods": "1"}}}))
    cli.kubectl("-n", namespace, "annotate", "deployment", SERVER_NAME, "--overwrite",
                "kubectl.kubernetes.io/restartedAt=now")  # not a declared field: no drift
    done = cli.cameleer("up", stack, "--reason", "image roll", "--set", f"image={PINNED_IMAGE[:-4]}beef",
                        "--json", expect=1)
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "rollout" and not error["retryable"], error
    assert "tenant-quota" in error["message"] and "exceeded quota" in error["message"], error


def test_suspend_removes_every_pod_and_reactivate_brings_them_back_ready(tenant_stack):
    cli, stack, namespace = tenant_stack
    _wait(lambda: _ready_pods(cli, namespace) == 1, "the server's pod to be Ready")
    cli.cameleer("up", stack, "--reason", "suspend", "--set", "suspended=true")
    _wait(lambda: _pod_count(cli, namespace) == 0, "the suspended tenant's pods to go", timeout=30)
    assert cli.get(namespace, "deployment", SERVER_NAME)["spec"]["replicas"] == 0
    cli.cameleer("up", stack, "--reason", "reactivate", "--set", "suspended=false")
    assert _ready_pods(cli, namespace) == 1  # the update returned after the rollout


def test_readiness_fails_while_the_servers_pod_cannot_come_back(tenant_stack):
    """The control plane's readiness check, against the cluster: Ready once rolled out; not
    ready, naming the replicas and the quota, while the server's pod is gone and the
    quota refuses its replacement."""
    from automation.readiness import api_client, check_readiness

    cli, stack, namespace = tenant_stack
    slug = stack.removeprefix("tenant-")
    api = api_client(Path(cli.kubeconfig).read_text())
    _wait(lambda: check_readiness(api, slug, ["prod"], suspended=False).ready, "the tenant to be ready")

    cli.kubectl("-n", namespace, "patch", "resourcequota", "tenant-quota", "--type", "merge",
                "-p", json.dumps({"spec": {"hard": {"pods": "0"}}}))
    cli.kubectl("-n", namespace, "delete", "pods", "-l", SERVER_SELECTOR, "--wait=true")

    def refused():
        readiness = check_readiness(api, slug, ["prod"], suspended=False)
        return not readiness.ready and "exceeded quota" in readiness.detail

    _wait(refused, "readiness to report the refused pod")
    detail = check_readiness(api, slug, ["prod"], suspended=False).detail
    assert f"{namespace}/{SERVER_NAME}: 0/1 replicas available" in detail, detail
    assert "tenant-quota" in detail, detail
    assert not check_readiness(api, slug, ["prod"], suspended=True).ready  # a Deployment of 1 is not suspended


def test_drift_runs_from_another_checkout_with_only_the_backend_and_secrets_credentials(tenant_stack, tmp_path):
    """CI's drift job: a fresh clone at another path, no data directory, no kubeconfig and
    no stack settings file; the stack's state carries how to reach its cluster and which
    transit key decrypts it."""
    import sys

    cli, stack, namespace = tenant_stack
    clone = tmp_path / "ci" / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    cli.kubectl("-n", namespace, "scale", "deployment", SERVER_NAME, "--replicas=2")
    env = {
        "HOME": os.environ["HOME"],
        "PATH": cli.env["PATH"],  # the CLI and its plugin launchers
        "PULUMI_HOME": cli.env["PULUMI_HOME"],  # the provider plugin
        "PULUMI_BACKEND_URL": cli.env["PULUMI_BACKEND_URL"],
        "PULUMI_CONFIG_PASSPHRASE": cli.env["PULUMI_CONFIG_PASSPHRASE"],
        "VAULT_ADDR": cli.env["VAULT_ADDR"],
        "VAULT_TOKEN": cli.env["VAULT_TOKEN"],
        "PYTHONPATH": str(clone),  # the clone's code, not this checkout's
        "CAMELEER_DATA_DIR": str(tmp_path / "ci" / "data"),
    }
    done = subprocess.run([sys.executable, "-m", "automation.cli", "drift", "--all", "--json"], cwd=clone,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert _drifted(json.loads(done.stdout)) == {"prod-server-deployment": {"spec.replicas"}}
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout == ""
