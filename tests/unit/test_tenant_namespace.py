import pytest

from components.catalog import CatalogError, Compute, get_tier
from components.tenant_namespace import TenantNamespace, TenantNamespaceArgs
from tests.unit.component_fixtures import cluster
from tests.unit.pulumi_mocks import run, use_mocks


def build(tier="low", environment="prod", slug="demo", committed=None):
    mocks = use_mocks()
    component = run(lambda: TenantNamespace(environment, TenantNamespaceArgs(
        cluster=cluster(), slug=slug, tier=get_tier(tier), environment=environment, committed=committed)))
    return mocks, component


def test_component_type_and_children_parented_to_it():
    mocks, component = build()
    (registration,) = mocks.by_type("cameleer:tenancy:TenantNamespace")
    children = mocks.children_of("prod")
    assert sorted(child.type for child in children) == [
        "kubernetes:core/v1:LimitRange", "kubernetes:core/v1:Namespace", "kubernetes:core/v1:ResourceQuota",
        "kubernetes:core/v1:ServiceAccount", "kubernetes:rbac.authorization.k8s.io/v1:Role",
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"]
    # The rest: the component itself and the cluster's provider.
    assert len(children) == len(mocks.registered) - 2
    assert component.namespace == "tenant-demo-prod"


def test_every_object_is_on_the_cluster_provider_and_managed():
    mocks, _ = build()
    (provider,) = mocks.providers()
    objects = mocks.kube_objects()
    assert len(objects) == 6
    for registration in objects:
        assert mocks.provider_of(registration) is provider, registration.name
        annotations = registration.manifest["metadata"]["annotations"]
        assert annotations == {"cameleer.io/owner": "cameleer/tenant-demo", "pulumi.com/patchForce": "true",
                               "pulumi.com/patchFieldManager": "cameleer"}, registration.name


def test_objects_inside_wait_for_the_namespace_and_the_binding_for_its_role():
    mocks, _ = build()
    (namespace,) = mocks.kube("Namespace")
    (role,) = mocks.kube("Role")
    inside = [r for r in mocks.kube_objects() if r is not namespace]
    assert all(namespace.urn in r.dependencies for r in inside), [r.name for r in inside]
    (binding,) = mocks.kube("RoleBinding")
    assert role.urn in binding.dependencies


def test_namespace_name_and_tenant_labels():
    mocks, _ = build(tier="mid", environment="dev", slug="acme")
    namespace = mocks.one("Namespace")
    assert namespace["metadata"]["name"] == "tenant-acme-dev"
    labels = namespace["metadata"]["labels"]
    assert labels["cameleer.io/tenant"] == "acme"
    assert labels["cameleer.io/tier"] == "mid"
    assert labels["cameleer.io/environment"] == "dev"


def test_pod_security_restricted_in_every_mode_with_a_version():
    mocks, _ = build()
    labels = mocks.one("Namespace")["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"].startswith("v1.")


@pytest.mark.parametrize("tier, environment, limits_cpu, pods", [
    ("low", "prod", "2", "10"),
    ("mid", "dev", "2", "10"),
    ("mid", "prod", "4", "20"),
    ("high", "staging", "2", "50"),
    ("business", "prod", "8", "100"),
])
def test_quota_comes_from_the_catalog(tier, environment, limits_cpu, pods):
    mocks, _ = build(tier=tier, environment=environment)
    quota = mocks.one("ResourceQuota")
    assert quota["metadata"]["namespace"] == f"tenant-demo-{environment}"
    assert quota["spec"]["hard"] == get_tier(tier).quota_for(environment).hard()
    assert quota["spec"]["hard"]["limits.cpu"] == limits_cpu
    assert quota["spec"]["hard"]["pods"] == pods


def test_committed_resources_size_the_quota():
    mocks, _ = build(tier="high", environment="prod", committed=Compute.parse(16, "32Gi"))
    assert mocks.one("ResourceQuota")["spec"]["hard"]["limits.cpu"] == "8"


def test_limit_range_from_the_catalog():
    mocks, _ = build(tier="mid", environment="prod")
    limit_range = mocks.one("LimitRange")
    assert limit_range["spec"]["limits"] == get_tier("mid").profile_for("prod").container_defaults.limits()


def test_server_role_is_least_privilege():
    mocks, _ = build()
    rules = mocks.one("Role", "cameleer-server")["rules"]
    verbs = {verb for rule in rules for verb in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}
    secrets = next(rule for rule in rules if "secrets" in rule["resources"])
    assert secrets["verbs"] == ["get"]
    assert sorted(secrets["resourceNames"]) == ["cameleer-database", "cameleer-license"]
    assert all("*" not in rule["resources"] and "*" not in rule["verbs"] for rule in rules)


def test_role_binding_binds_the_server_account_in_its_namespace():
    mocks, _ = build()
    binding = mocks.one("RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "cameleer-server"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cameleer-server",
                                    "namespace": "tenant-demo-prod"}]
    assert mocks.one("ServiceAccount")["automountServiceAccountToken"] is False


def test_environment_the_tier_lacks_fails_before_registering():
    mocks = use_mocks()
    with pytest.raises(CatalogError, match="tier 'low' does not offer environment 'dev'"):
        TenantNamespaceArgs(cluster=cluster(), slug="demo", tier=get_tier("low"), environment="dev")
    assert mocks.registered == []


def test_bad_slug_is_refused():
    with pytest.raises(CatalogError, match="DNS-1123"):
        TenantNamespaceArgs(cluster=cluster(), slug="Demo", tier=get_tier("low"), environment="prod")
