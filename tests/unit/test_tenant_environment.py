import pulumi

from components.catalog import get_tier
from components.tenant_environment import TenantEnvironment, TenantEnvironmentArgs, _database_name
from tests.unit.component_fixtures import ADMIN_URL, DATABASE, IMAGE, KUBECONFIG, LICENSE, target
from tests.unit.pulumi_mocks import PROVIDER_TYPE, is_secret_value, run, unwrap_secret, use_mocks


def build(tier="mid", environment="dev", suspended=False, **overrides):
    mocks = use_mocks()
    component = run(lambda: TenantEnvironment(environment, TenantEnvironmentArgs(
        target=target(), slug="demo", tier=get_tier(tier), environment=environment, image=IMAGE,
        database=DATABASE, database_admin_url=pulumi.Output.secret(ADMIN_URL),
        license=pulumi.Output.secret(LICENSE), suspended=suspended, **overrides)))
    return mocks, component


def test_composes_the_five_components():
    mocks, component = build()
    child_types = sorted(child.type for child in mocks.children_of("dev"))
    assert child_types == [
        "cameleer:tenancy:NetworkIsolation", "cameleer:tenancy:TenantCredentials",
        "cameleer:tenancy:TenantDatabase", "cameleer:tenancy:TenantNamespace",
        "cameleer:tenancy:TenantServer",
    ]
    assert (component.namespace, component.server, component.database_schema) == (
        "tenant-demo-dev", "cameleer-server", "tenant_demo_dev")


def test_every_namespaced_object_lands_in_the_tenant_namespace():
    mocks, _ = build()
    namespaced = [r.manifest for r in mocks.kube_objects() if r.kind != "Namespace"]
    assert namespaced and all(m["metadata"]["namespace"] == "tenant-demo-dev" for m in namespaced)


def test_one_provider_for_the_cluster_carries_every_object():
    mocks, _ = build()
    (provider,) = mocks.by_type(PROVIDER_TYPE)
    assert provider.name == "cluster-test"
    assert provider.inputs["clusterIdentifier"] == "test"
    assert is_secret_value(provider.inputs["kubeconfig"])
    assert unwrap_secret(provider.inputs["kubeconfig"]) == KUBECONFIG
    kube = mocks.kube_objects()
    assert len(kube) == 17  # namespace 6, network policies 6, credentials 1, server 4
    assert all(mocks.provider_of(r) is provider for r in kube), [r.name for r in kube if mocks.provider_of(r) is not provider]


def test_rollout_timeout_reaches_the_server_deployment():
    mocks, _ = build(rollout_timeout="90s")
    (deployment,) = mocks.kube("Deployment")
    assert deployment.custom_timeouts == {"create": "90s", "update": "90s"}


def test_server_is_sized_and_prioritised_by_the_tier():
    mocks, _ = build(tier="mid", environment="dev")
    pod = mocks.one("Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "cameleer-tenant-mid"
    assert pod["containers"][0]["resources"] == get_tier("mid").profile_for("dev").server.resources()


def test_database_secret_names_the_role_schema_and_database():
    mocks, _ = build()
    data = mocks.one("Secret", "cameleer-database")["stringData"]
    assert data["username"] == data["schema"] == "tenant_demo_dev"
    assert data["database"] == "cameleer"
    assert (data["host"], data["port"]) == ("203.0.113.10", "5432")
    assert data["password"] == "generated-password"


def test_the_database_role_uses_the_credentials_password():
    mocks, _ = build()
    (schema,) = mocks.by_type("pulumi-python:dynamic/postgres:TenantSchema")
    assert schema.inputs["password"]["value"] == "generated-password"


def test_cluster_cidrs_reach_the_network_policy():
    mocks, _ = build()
    policy = mocks.one("NetworkPolicy", "allow-internet")
    assert "198.18.0.0/15" in policy["spec"]["egress"][0]["to"][0]["ipBlock"]["except"]


def test_database_name_comes_from_the_admin_url():
    assert _database_name("postgresql://a:b@h:5432/platform") == "platform"
    assert _database_name("host=h user=admin password=x") == "admin"


def test_every_object_in_the_namespace_waits_for_the_namespace():
    mocks, _ = build()
    (namespace,) = mocks.kube("Namespace")
    inside = [r for r in mocks.kube_objects() if r is not namespace]
    assert inside and all(namespace.urn in r.dependencies for r in inside), \
        [r.name for r in inside if namespace.urn not in r.dependencies]


def test_the_component_dependencies_reach_every_child_resource():
    mocks = use_mocks()

    def program():
        from components.providers.random import RandomPassword

        gate = RandomPassword("gate", length=16)
        TenantEnvironment("dev", TenantEnvironmentArgs(
            target=target(), slug="demo", tier=get_tier("mid"), environment="dev", image=IMAGE,
            database=DATABASE, database_admin_url=ADMIN_URL, license=LICENSE),
            pulumi.ResourceOptions(depends_on=[gate]))

    run(program)
    gate = mocks.named("gate").urn
    # Every custom resource of the environment: its Kubernetes objects and dynamic resources
    # (the provider, shared by the cluster's objects, needs nothing to exist first).
    custom = [r for r in mocks.registered if r.name != "gate" and r.type != PROVIDER_TYPE
              and (r.is_kube_object or r.type.startswith("pulumi-python:dynamic/"))]
    assert len(custom) == 19 and all(gate in r.dependencies for r in custom), \
        [r.name for r in custom if gate not in r.dependencies]


def test_the_server_is_told_where_its_secrets_are():
    mocks, _ = build()
    data = mocks.one("ConfigMap")["data"]
    assert (data["CAMELEER_SECRETS_ROLE"], data["CAMELEER_SECRETS_PATH"], data["CAMELEER_SECRETS_TOKEN_FILE"]) == (
        "tenant-demo", "tenants/demo", "/var/run/secrets/openbao/token")


def test_the_server_is_told_its_clusters_auth_mount():
    mocks, _ = build(secrets_auth_mount="kubernetes-eu2")
    assert mocks.one("ConfigMap")["data"]["CAMELEER_SECRETS_AUTH_MOUNT"] == "kubernetes-eu2"


def test_the_server_is_told_where_openbao_and_the_control_plane_are():
    mocks, _ = build(secrets_address="http://openbao.platform.svc:8200", control_plane_url="https://cp.example.com")
    data = mocks.one("ConfigMap")["data"]
    assert data["CAMELEER_SECRETS_ADDRESS"] == "http://openbao.platform.svc:8200"
    assert data["CAMELEER_CONTROL_PLANE_URL"] == "https://cp.example.com"


def test_a_server_told_everything_has_exactly_these_settings():
    mocks, _ = build(secrets_auth_mount="kubernetes-eu2", secrets_address="http://openbao:8200",
                     control_plane_url="https://cp.example.com")
    assert set(mocks.one("ConfigMap")["data"]) == {
        "CAMELEER_TENANT", "CAMELEER_ENVIRONMENT", "CAMELEER_TIER", "CAMELEER_RETENTION_DAYS",
        "CAMELEER_SECRETS_ROLE", "CAMELEER_SECRETS_PATH", "CAMELEER_SECRETS_TOKEN_FILE",
        "CAMELEER_SECRETS_AUTH_MOUNT", "CAMELEER_SECRETS_ADDRESS", "CAMELEER_CONTROL_PLANE_URL"}


def test_a_stack_configured_before_servers_were_told_addresses_keeps_its_settings_as_they_were():
    """No auth mount, no addresses in the stack's config: the ConfigMap is what it was."""
    mocks, _ = build()
    assert set(mocks.one("ConfigMap")["data"]) == {
        "CAMELEER_TENANT", "CAMELEER_ENVIRONMENT", "CAMELEER_TIER", "CAMELEER_RETENTION_DAYS",
        "CAMELEER_SECRETS_ROLE", "CAMELEER_SECRETS_PATH", "CAMELEER_SECRETS_TOKEN_FILE"}
