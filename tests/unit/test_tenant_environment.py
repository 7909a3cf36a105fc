import pulumi

from components.catalog import get_tier
from components.tenant_environment import TenantEnvironment, TenantEnvironmentArgs, _database_name
from tests.unit.component_fixtures import ADMIN_URL, DATABASE, IMAGE, LICENSE, TARGET
from tests.unit.pulumi_mocks import run, use_mocks


def build(tier="mid", environment="dev", suspended=False):
    mocks = use_mocks()
    component = run(lambda: TenantEnvironment(environment, TenantEnvironmentArgs(
        target=TARGET, slug="demo", tier=get_tier(tier), environment=environment, image=IMAGE,
        database=DATABASE, database_admin_url=pulumi.Output.secret(ADMIN_URL),
        license=pulumi.Output.secret(LICENSE), suspended=suspended)))
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
    kube = [r for r in mocks.registered if r.type.startswith("pulumi-python:dynamic/kubernetes:")]
    namespaced = [r.manifest for r in kube if r.manifest["kind"] != "Namespace"]
    assert namespaced and all(m["metadata"]["namespace"] == "tenant-demo-dev" for m in namespaced)


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
    kube = [r for r in mocks.registered if r.type.startswith("pulumi-python:dynamic/kubernetes:")]
    inside = [r for r in kube if r is not namespace]
    assert inside and all(namespace.urn in r.dependencies for r in inside), \
        [r.name for r in inside if namespace.urn not in r.dependencies]


def test_the_component_dependencies_reach_every_child_resource():
    mocks = use_mocks()

    def program():
        from components.providers.random import RandomPassword

        gate = RandomPassword("gate", length=16)
        TenantEnvironment("dev", TenantEnvironmentArgs(
            target=TARGET, slug="demo", tier=get_tier("mid"), environment="dev", image=IMAGE,
            database=DATABASE, database_admin_url=ADMIN_URL, license=LICENSE),
            pulumi.ResourceOptions(depends_on=[gate]))

    run(program)
    gate = mocks.named("gate").urn
    custom = [r for r in mocks.registered if r.type.startswith("pulumi-python:dynamic/") and r.name != "gate"]
    assert custom and all(gate in r.dependencies for r in custom), \
        [r.name for r in custom if gate not in r.dependencies]
