"""Proof that the engine is real: the Automation API drives the built CLI, the project's
language host, the pulumi-kubernetes provider plugin and the project's random-password
provider against the local API server, on both state backends. Out-of-band edits are made
with `kubectl`."""

from __future__ import annotations

import json
import subprocess

import pytest
from pulumi import automation as auto

from .conftest import PROGRAMS

pytestmark = pytest.mark.engine


@pytest.fixture(params=["file", "postgres"])
def backend_url(request, tmp_path, state_postgres_url) -> str:
    if request.param == "file":
        state = tmp_path / "state"
        state.mkdir()
        return f"file://{state}"
    return state_postgres_url


@pytest.fixture
def proof_stack(backend_url, engine_env, unique_name):
    env = {**engine_env, "PULUMI_BACKEND_URL": backend_url}
    stack = auto.create_stack(
        unique_name,
        work_dir=str(PROGRAMS / "engine_proof"),
        opts=auto.LocalWorkspaceOptions(env_vars=env),
    )
    stack.set_config("namespace", auto.ConfigValue(f"proof-{unique_name}"))
    yield stack
    stack.destroy(on_output=lambda _: None)
    stack.workspace.remove_stack(unique_name)


def _greeting(kube_core, namespace: str) -> str:
    return kube_core.read_namespaced_config_map("settings", namespace).data["greeting"]


def test_up_drift_restore_history_destroy(proof_stack, kube_core, kubeconfig):
    namespace = f"proof-{proof_stack.name}"

    up = proof_stack.up(on_output=lambda _: None)
    assert up.summary.result == "succeeded"
    assert kube_core.read_namespace(namespace).status.phase == "Active"
    assert _greeting(kube_core, namespace) == "hello"
    secret = kube_core.read_namespaced_secret("credentials", namespace)
    assert len(secret.data["password"]) > 0
    # State holds typed pulumi-kubernetes resources, the object's fields as their properties.
    resources = proof_stack.export_stack().deployment["resources"]
    [config_map] = [r for r in resources if r["type"] == "kubernetes:core/v1:ConfigMap"]
    assert config_map["outputs"]["data"] == {"greeting": "hello", "mode": "strict"}
    assert {r["type"] for r in resources} >= {"kubernetes:core/v1:Namespace", "kubernetes:core/v1:Secret",
                                              "pulumi:providers:kubernetes"}

    # Out-of-band edit with kubectl, then drift detection without applying anything.
    subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "-n", namespace, "patch", "configmap", "settings",
         "-p", json.dumps({"data": {"greeting": "tampered"}})],
        check=True, capture_output=True,
    )
    drift = proof_stack.preview_refresh(on_output=lambda _: None)
    assert drift.change_summary.get("update") == 1
    assert _greeting(kube_core, namespace) == "tampered", "a refresh preview must not touch the cluster"

    # Refresh state from the cluster, then `up` puts the program's value back.
    proof_stack.refresh(on_output=lambda _: None)
    restored = proof_stack.up(on_output=lambda _: None)
    assert restored.summary.resource_changes.get("update") == 1
    assert _greeting(kube_core, namespace) == "hello"

    kinds = [entry.kind for entry in proof_stack.history()]
    assert kinds == ["update", "refresh", "update"]

    # The password is a secret in state: encrypted, never in plain text.
    password = proof_stack.outputs()["password"]
    assert password.secret
    # (The Automation API's export_stack() decrypts secrets, so read state as the CLI stores it.)
    exported = subprocess.run(
        ["pulumi", "stack", "export", "--stack", proof_stack.name],
        cwd=proof_stack.workspace.work_dir, env=proof_stack.workspace.env_vars,
        check=True, capture_output=True, text=True,
    ).stdout
    assert password.value not in exported
    assert "ciphertext" in exported

    proof_stack.destroy(on_output=lambda _: None)
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as gone:
        kube_core.read_namespace(namespace)
    assert gone.value.status == 404

