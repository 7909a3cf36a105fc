"""The stack programs run end to end under mocks, selected by stack name as the engine does."""

import runpy
from pathlib import Path

import pulumi
import pytest

from stacks.config import StackConfigError
from tests.unit.pulumi_mocks import run, use_mocks

MAIN = Path(__file__).resolve().parents[2] / "stacks" / "__main__.py"
IMAGE = "ghcr.io/cameleer/server@sha256:" + "ab" * 32


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    return str(path)


def tenant_config(kubeconfig, **overrides):
    values = {"tier": "mid", "environments": '["dev","prod"]', "image": IMAGE,
              "databaseEndpoint": "127.0.0.1:5432", "kubeconfig": kubeconfig,
              "databaseAdminUrl": "postgresql://admin:s3cret@127.0.0.1:5432/cameleer", "license": "jwt"}
    values.update(overrides)
    return {f"cameleer:{key}": value for key, value in values.items() if value is not None}


def prepare(stack, config):
    pulumi.runtime.set_all_config(config, [key for key in config if key.endswith(("AdminUrl", ":license"))])
    return use_mocks(stack=stack)


def run_main():
    run(lambda: runpy.run_path(str(MAIN), run_name="__main__"))


def run_stack(stack, config):
    mocks = prepare(stack, config)
    run_main()
    return mocks


def test_tenant_stack_builds_one_environment_per_configured_environment(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(kubeconfig))
    environments = mocks.by_type("cameleer:tenancy:TenantEnvironment")
    assert sorted(e.name for e in environments) == ["dev", "prod"]
    namespaces = sorted(m["metadata"]["name"] for m in mocks.manifests("Namespace"))
    assert namespaces == ["tenant-demo-dev", "tenant-demo-prod"]
    assert mocks.by_type("cameleer:cluster:ClusterBaseline") == []


def test_tenant_stack_passes_the_kubeconfig_to_every_object(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(kubeconfig))
    kube = [r for r in mocks.registered if r.type.startswith("pulumi-python:dynamic/kubernetes:")]
    assert kube and all(r.inputs["cluster"]["kubeconfig"] == kubeconfig for r in kube)


def test_suspended_tenant_has_no_running_servers(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(kubeconfig, suspended="true"))
    assert [d["spec"]["replicas"] for d in mocks.manifests("Deployment")] == [0, 0]


def test_dedicated_stack_adds_the_cluster_baseline(kubeconfig):
    config = tenant_config(kubeconfig, tier="business", environments='["dev","staging","prod","qa"]',
                           committed='{"cpu":"32","memory":"64Gi"}')
    mocks = run_stack("dedicated-acme", config)
    assert len(mocks.by_type("cameleer:cluster:ClusterBaseline")) == 1
    classes = {m["metadata"]["name"] for m in mocks.manifests("PriorityClass")}
    assert classes == {"cameleer-platform", "cameleer-tenant-business"}
    quotas = {m["metadata"]["namespace"]: m["spec"]["hard"]["limits.cpu"] for m in mocks.manifests("ResourceQuota")}
    assert quotas == {"tenant-acme-dev": "6400m", "tenant-acme-staging": "6400m",
                      "tenant-acme-prod": "16", "tenant-acme-qa": "3200m"}


def test_shared_cluster_stack_is_the_baseline_only(kubeconfig):
    mocks = run_stack("shared-eu1", {"cameleer:kubeconfig": kubeconfig})
    assert len(mocks.by_type("cameleer:cluster:ClusterBaseline")) == 1
    assert mocks.by_type("cameleer:tenancy:TenantEnvironment") == []
    assert {m["metadata"]["name"] for m in mocks.manifests("PriorityClass")} == {
        "cameleer-platform", "cameleer-tenant-low", "cameleer-tenant-mid"}


@pytest.mark.parametrize("stack, overrides, message", [
    ("tenant-demo", {"tier": "gold"}, "cameleer:tier: unknown tier 'gold'"),
    ("tenant-demo", {"slug": "other"}, "does not match the stack name"),
    ("tenant-demo", {"tier": "low"}, "tier 'low' does not offer environment 'dev'"),
    ("tenant-demo", {"license": None}, "cameleer:license: missing"),
    ("customer-demo", {}, "is not one of tenant-<name>"),
])
def test_invalid_config_fails_before_any_resource_is_registered(kubeconfig, stack, overrides, message):
    mocks = prepare(stack, tenant_config(kubeconfig, **overrides))
    with pytest.raises(StackConfigError, match=message):
        run_main()
    assert mocks.registered == []


def test_secrets_never_appear_in_plain_in_registered_inputs(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(kubeconfig))
    for registration in mocks.registered:
        assert "s3cret" not in _plain_text(registration.inputs), registration.name


def _plain_text(value) -> str:
    """Everything in `value` outside secret envelopes, as text."""
    from tests.unit.pulumi_mocks import is_secret_value

    if is_secret_value(value):
        return ""
    if isinstance(value, dict):
        return " ".join(f"{key} {_plain_text(item)}" for key, item in value.items() if key != "__provider")
    if isinstance(value, list):
        return " ".join(_plain_text(item) for item in value)
    return str(value)
