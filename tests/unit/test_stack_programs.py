"""The stack programs run end to end under mocks, selected by stack name as the engine does."""

import os
import runpy
from pathlib import Path

import pulumi
import pytest

from stacks.config import StackConfigError
from tests.unit.pulumi_mocks import PROVIDER_TYPE, is_secret_value, run, unwrap_secret, use_mocks

MAIN = Path(__file__).resolve().parents[2] / "stacks" / "__main__.py"
IMAGE = "ghcr.io/cameleer/server@sha256:" + "ab" * 32
KUBECONFIG_CONTENT = "apiVersion: v1\nkind: Config\n# the local cluster\n"


@pytest.fixture(autouse=True)
def no_cluster_environment(monkeypatch):
    """No kubeconfig from the machine running the tests reaches a program by accident."""
    for variable in [name for name in os.environ if name.startswith("CAMELEER_KUBECONFIG_")]:
        monkeypatch.delenv(variable)
    monkeypatch.delenv("CAMELEER_CLUSTER", raising=False)
    monkeypatch.delenv("CAMELEER_CLUSTER_KUBECONFIGS", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """The local cluster's kubeconfig, as `source .cameleer/services.env` sets it."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG_CONTENT)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return str(path)


def tenant_config(**overrides):
    values = {"tier": "mid", "environments": '["dev","prod"]', "image": IMAGE,
              "databaseEndpoint": "127.0.0.1:5432",
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
    mocks = run_stack("tenant-demo", tenant_config())
    environments = mocks.by_type("cameleer:tenancy:TenantEnvironment")
    assert sorted(e.name for e in environments) == ["dev", "prod"]
    namespaces = sorted(m["metadata"]["name"] for m in mocks.manifests("Namespace"))
    assert namespaces == ["tenant-demo-dev", "tenant-demo-prod"]
    assert mocks.by_type("cameleer:cluster:ClusterBaseline") == []


def assert_on_one_cluster_provider(mocks, cluster, content):
    """Every Kubernetes object is on the provider `cluster-<cluster>`, whose kubeconfig is the
    file's content, as a secret."""
    (provider,) = mocks.by_type(PROVIDER_TYPE)
    assert provider.name == f"cluster-{cluster}"
    assert provider.inputs["clusterIdentifier"] == cluster
    assert is_secret_value(provider.inputs["kubeconfig"])
    assert unwrap_secret(provider.inputs["kubeconfig"]) == content
    kube = mocks.kube_objects()
    assert kube and all(mocks.provider_of(r) is provider for r in kube), \
        [r.name for r in kube if mocks.provider_of(r) is not provider]


def test_tenant_stack_puts_every_object_on_the_clusters_provider(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config())
    assert_on_one_cluster_provider(mocks, "eu1", KUBECONFIG_CONTENT)


def test_the_kubeconfig_path_is_never_registered(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config())
    for registration in mocks.registered:
        assert kubeconfig not in repr(registration.inputs), registration.name
        assert kubeconfig not in repr(registration.manifest), registration.name


def test_a_named_cluster_reads_its_own_kubeconfig_variable(tmp_path, monkeypatch, kubeconfig):
    own = tmp_path / "us2.kubeconfig"
    own.write_text("apiVersion: v1\nkind: Config\n# us2\n")
    monkeypatch.setenv("CAMELEER_KUBECONFIG_US2", str(own))
    mocks = run_stack("tenant-demo", tenant_config(cluster="us2"))
    assert_on_one_cluster_provider(mocks, "us2", "apiVersion: v1\nkind: Config\n# us2\n")
    assert str(own) not in repr([r.inputs for r in mocks.registered])


def test_a_cluster_without_a_kubeconfig_fails_clearly_before_registering(monkeypatch):
    mocks = prepare("tenant-demo", tenant_config())
    with pytest.raises(StackConfigError, match="CAMELEER_KUBECONFIG_EU1") as raised:
        run_main()
    assert "no kubeconfig for cluster 'eu1'" in str(raised.value)
    assert mocks.registered == []


def test_the_local_kubeconfig_is_not_used_for_another_cluster(kubeconfig):
    mocks = prepare("tenant-demo", tenant_config(cluster="us2"))
    with pytest.raises(StackConfigError, match="CAMELEER_KUBECONFIG_US2"):
        run_main()
    assert mocks.registered == []


def test_a_cluster_whose_secrets_server_is_down_fails_as_retryable_not_as_bad_config(monkeypatch):
    from automation.errors import ErrorKind, classify

    monkeypatch.setenv("CAMELEER_KUBECONFIG_REF_EU1", "platform/clusters/eu1")
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    monkeypatch.setenv("VAULT_TOKEN", "s.unit-test-token")
    mocks = prepare("tenant-demo", tenant_config())
    with pytest.raises(pulumi.RunError) as raised:
        run_main()
    assert not isinstance(raised.value, StackConfigError)
    assert classify(f"error: {raised.value}").kind is ErrorKind.TRANSIENT
    assert "s.unit-test-token" not in str(raised.value)
    assert mocks.registered == []


def test_rollout_timeout_from_config_bounds_the_server_rollouts(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(rolloutTimeout="90s"))
    deployments = mocks.kube("Deployment")
    assert len(deployments) == 2
    assert all(d.custom_timeouts == {"create": "90s", "update": "90s"} for d in deployments)


def test_rollout_timeout_defaults_to_five_minutes(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config())
    assert all(d.custom_timeouts == {"create": "5m", "update": "5m"} for d in mocks.kube("Deployment"))


def test_the_auth_mount_from_config_reaches_every_server(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(secretsAuthMount="kubernetes-eu2"))
    settings = mocks.manifests("ConfigMap")
    assert len(settings) == 2 and all(m["data"]["CAMELEER_SECRETS_AUTH_MOUNT"] == "kubernetes-eu2" for m in settings)


def test_the_addresses_from_config_reach_every_server(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(secretsAddress="http://127.0.0.1:58200/",
                                                   controlPlaneUrl="https://cp.example.com/cameleer"))
    settings = [m["data"] for m in mocks.manifests("ConfigMap")]
    assert len(settings) == 2
    assert {(d["CAMELEER_SECRETS_ADDRESS"], d["CAMELEER_CONTROL_PLANE_URL"]) for d in settings} == {
        ("http://127.0.0.1:58200", "https://cp.example.com/cameleer")}  # joined to paths: no trailing slash


def test_a_stack_configured_without_addresses_keeps_updating(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config())
    settings = [m["data"] for m in mocks.manifests("ConfigMap")]
    assert len(settings) == 2
    assert not any({"CAMELEER_SECRETS_ADDRESS", "CAMELEER_CONTROL_PLANE_URL"} & set(d) for d in settings)


def test_an_address_with_credentials_is_refused_without_showing_them(kubeconfig):
    mocks = prepare("tenant-demo", tenant_config(controlPlaneUrl="https://admin:hunter2@cp.example.com"))
    with pytest.raises(StackConfigError, match="cameleer:controlPlaneUrl: the URL must not contain '@'") as raised:
        run_main()
    assert "hunter2" not in str(raised.value)
    assert mocks.registered == []


def test_suspended_tenant_has_no_running_servers(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config(suspended="true"))
    assert [d["spec"]["replicas"] for d in mocks.manifests("Deployment")] == [0, 0]


def test_dedicated_stack_adds_the_cluster_baseline(kubeconfig):
    config = tenant_config(tier="business", environments='["dev","staging","prod","qa"]',
                           committed='{"cpu":"32","memory":"64Gi"}')
    mocks = run_stack("dedicated-acme", config)
    assert len(mocks.by_type("cameleer:cluster:ClusterBaseline")) == 1
    classes = {m["metadata"]["name"] for m in mocks.manifests("PriorityClass")}
    assert classes == {"cameleer-platform", "cameleer-tenant-business"}
    quotas = {m["metadata"]["namespace"]: m["spec"]["hard"]["limits.cpu"] for m in mocks.manifests("ResourceQuota")}
    assert quotas == {"tenant-acme-dev": "6400m", "tenant-acme-staging": "6400m",
                      "tenant-acme-prod": "16", "tenant-acme-qa": "3200m"}
    assert_on_one_cluster_provider(mocks, "eu1", KUBECONFIG_CONTENT)


def test_shared_cluster_stack_is_the_baseline_only(kubeconfig):
    mocks = run_stack("shared-eu1", {})
    assert len(mocks.by_type("cameleer:cluster:ClusterBaseline")) == 1
    assert_on_one_cluster_provider(mocks, "eu1", KUBECONFIG_CONTENT)
    assert mocks.by_type("cameleer:tenancy:TenantEnvironment") == []
    assert {m["metadata"]["name"] for m in mocks.manifests("PriorityClass")} == {
        "cameleer-platform", "cameleer-tenant-low", "cameleer-tenant-mid"}


@pytest.mark.parametrize("stack, overrides, message", [
    ("tenant-demo", {"tier": "gold"}, "cameleer:tier: unknown tier 'gold'"),
    ("tenant-demo", {"slug": "other"}, "does not match the stack name"),
    ("tenant-demo", {"tier": "low"}, "tier 'low' does not offer environment 'dev'"),
    ("tenant-demo", {"license": None}, "cameleer:license: missing"),
    ("tenant-demo", {"rolloutTimeout": "5 minutes"}, "cameleer:rolloutTimeout: expected a duration"),
    ("tenant-demo", {"cluster": "EU1"}, "cameleer:cluster: .*DNS-1123"),
    ("tenant-demo", {"secretsAuthMount": "kubernetes eu2"}, "cameleer:secretsAuthMount: expected an OpenBao mount"),
    ("tenant-demo", {"secretsAddress": "127.0.0.1:8200"}, "cameleer:secretsAddress: expected an http.s. URL"),
    ("tenant-demo", {"secretsAddress": "http://openbao:99999"}, "cameleer:secretsAddress: expected an http.s. URL"),
    ("tenant-demo", {"controlPlaneUrl": "ftp://cp.example.com"}, "cameleer:controlPlaneUrl: expected an http.s. URL"),
    ("tenant-demo", {"controlPlaneUrl": "https://cp.example.com/?x=1"},
     "cameleer:controlPlaneUrl: expected a base URL without query"),
    ("customer-demo", {}, "is not one of tenant-<name>"),
])
def test_invalid_config_fails_before_any_resource_is_registered(kubeconfig, stack, overrides, message):
    mocks = prepare(stack, tenant_config(**overrides))
    with pytest.raises(StackConfigError, match=message):
        run_main()
    assert mocks.registered == []


def test_secrets_never_appear_in_plain_in_registered_inputs(kubeconfig):
    mocks = run_stack("tenant-demo", tenant_config())
    for registration in mocks.registered:
        plain = _plain_text(registration.inputs)
        assert "s3cret" not in plain, registration.name
        assert "# the local cluster" not in plain, registration.name  # the kubeconfig content


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
