"""The project's own stacks (Pulumi.yaml at the repo root, `main: stacks/`) through the real
engine, against the local API server and PostgreSQL: tenant stacks on the shared cluster
(low and mid, tier change, suspension, destroy) and a dedicated cluster stack.

What is expected comes from the catalog and the components' naming, never from numbers
written down here. Every stack runs the project's CrossGuard pack where it is brought up.
"""

from __future__ import annotations

import base64

import psycopg
import pytest
from kubernetes.utils import parse_quantity
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from components import naming
from components.catalog import Compute, get_tier
from components.cluster_baseline import PLATFORM_PRIORITY, PLATFORM_PRIORITY_CLASS
from components.network_isolation import NON_PUBLIC_RANGES
from components.tenant_namespace import DATABASE_SECRET, LICENSE_SECRET, SERVER_ACCOUNT
from components.tenant_server import LICENSE_FILE, SERVER_NAME

from .conftest import PINNED_IMAGE, REPO_ROOT, Secret, kube_missing, license_jwt, pg_schema_and_role, tenant_config

pytestmark = pytest.mark.engine

POLICY_PACK = str(REPO_ROOT / "policy")
NETWORK_POLICIES = {"default-deny", "allow-dns", "allow-same-namespace", "allow-from-platform",
                    "allow-database", "allow-internet"}


# --------------------------------------------------------------------------- what the cluster must show


def _quantities(mapping) -> dict:
    return {key: parse_quantity(value) for key, value in (mapping or {}).items()}


def _resources(compute: Compute) -> dict:
    return _quantities(compute.as_resources())


def _decoded(secret, key: str) -> str:
    return base64.b64decode(secret.data[key]).decode()


def assert_environment(kube, admin_url: str, *, slug: str, tier_name: str, environment: str,
                       license: str, replicas: int, committed: Compute | None = None) -> None:
    """Everything one tenant environment's TenantEnvironment must have put on the cluster and
    into PostgreSQL, checked against the catalog."""
    tier = get_tier(tier_name)
    profile = tier.profile_for(environment)
    namespace = naming.namespace_name(slug, environment)
    identifier = naming.database_identifier(slug, environment)
    labels = naming.tenant_labels(slug, tier.name, environment)

    ns = kube.core.read_namespace(namespace)
    assert ns.status.phase == "Active"
    assert {**labels, **naming.pod_security_labels()}.items() <= ns.metadata.labels.items()

    quota = kube.core.read_namespaced_resource_quota("tenant-quota", namespace)
    assert _quantities(quota.spec.hard) == _quantities(tier.quota_for(environment, committed).hard())
    limit_range = kube.core.read_namespaced_limit_range("tenant-limits", namespace)
    [container_limits] = limit_range.spec.limits
    defaults = profile.container_defaults
    assert container_limits.type == "Container"
    assert _quantities(container_limits.max) == _resources(defaults.max)
    assert _quantities(container_limits.default) == _resources(defaults.default_limit)
    assert _quantities(container_limits.default_request) == _resources(defaults.default_request)

    policies = {policy.metadata.name: policy.spec for policy in
                kube.networking.list_namespaced_network_policy(namespace).items}
    assert set(policies) == NETWORK_POLICIES
    deny = policies["default-deny"]
    assert not deny.pod_selector.match_labels and not deny.pod_selector.match_expressions
    assert set(deny.policy_types) == {"Ingress", "Egress"}
    assert not deny.ingress and not deny.egress
    [dns] = policies["allow-dns"].egress
    assert dns.to[0].namespace_selector.match_labels == {naming.NAMESPACE_NAME_LABEL: "kube-system"}
    assert {(port.protocol, port.port) for port in dns.ports} == {("UDP", 53), ("TCP", 53)}
    [platform] = policies["allow-from-platform"].ingress
    assert platform._from[0].namespace_selector.match_labels == {
        naming.NAMESPACE_NAME_LABEL: naming.PLATFORM_NAMESPACE}
    same = policies["allow-same-namespace"]
    assert same.ingress[0]._from[0].pod_selector is not None and same.egress[0].to[0].pod_selector is not None
    database = conninfo_to_dict(admin_url)
    [to_database] = policies["allow-database"].egress
    assert to_database.to[0].ip_block.cidr == f"{database['host']}/32"
    assert [(port.protocol, port.port) for port in to_database.ports] == [("TCP", int(database["port"]))]
    [internet] = policies["allow-internet"].egress
    assert internet.to[0].ip_block.cidr == "0.0.0.0/0"
    assert set(NON_PUBLIC_RANGES) <= set(internet.to[0].ip_block._except)

    account = kube.core.read_namespaced_service_account(SERVER_ACCOUNT, namespace)
    assert account.automount_service_account_token is False
    role = kube.rbac.read_namespaced_role(SERVER_ACCOUNT, namespace)
    secrets_rule = next(rule for rule in role.rules if "secrets" in rule.resources)
    assert secrets_rule.verbs == ["get"]
    assert sorted(secrets_rule.resource_names) == sorted([LICENSE_SECRET, DATABASE_SECRET])
    assert all(rule.resource_names for rule in role.rules if "secrets" in rule.resources)
    binding = kube.rbac.read_namespaced_role_binding(SERVER_ACCOUNT, namespace)
    assert binding.role_ref.name == SERVER_ACCOUNT
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", SERVER_ACCOUNT, namespace)]

    deployment = kube.apps.read_namespaced_deployment(SERVER_NAME, namespace)
    assert deployment.spec.replicas == replicas
    assert deployment.metadata.labels[naming.SUSPENDED_LABEL] == ("true" if replicas == 0 else "false")
    pod = deployment.spec.template.spec
    assert pod.service_account_name == SERVER_ACCOUNT
    assert pod.priority_class_name == tier.priority_class_name
    [container] = pod.containers
    assert container.image == PINNED_IMAGE
    assert _quantities(container.resources.limits) == _resources(profile.server.limits)
    assert _quantities(container.resources.requests) == _resources(profile.server.requests)
    context = container.security_context
    assert context.run_as_non_root and context.read_only_root_filesystem
    assert context.allow_privilege_escalation is False and context.capabilities.drop == ["ALL"]
    assert container.liveness_probe and container.readiness_probe
    assert kube.core.read_namespaced_service(SERVER_NAME, namespace).spec.type == "ClusterIP"

    assert _decoded(kube.core.read_namespaced_secret(LICENSE_SECRET, namespace), LICENSE_FILE) == license
    credentials = kube.core.read_namespaced_secret(DATABASE_SECRET, namespace)
    assert _decoded(credentials, "username") == identifier
    assert _decoded(credentials, "schema") == identifier
    assert _decoded(credentials, "database") == database["dbname"]

    # The tenant's own role owns its schema, and logs in with the password of the Secret.
    assert pg_schema_and_role(admin_url, identifier) == (identifier, True)
    tenant_url = make_conninfo(admin_url, user=identifier, password=_decoded(credentials, "password"))
    with psycopg.connect(tenant_url, autocommit=True) as conn:
        assert conn.execute("SHOW search_path").fetchone()[0] == identifier
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)


def assert_environment_gone(kube, admin_url: str, slug: str, environment: str) -> None:
    assert kube_missing(kube.core.read_namespace, naming.namespace_name(slug, environment))
    assert pg_schema_and_role(admin_url, naming.database_identifier(slug, environment)) == (None, False)


def _namespace_quota(kube, slug: str, environment: str) -> dict:
    quota = kube.core.read_namespaced_resource_quota("tenant-quota", naming.namespace_name(slug, environment))
    return _quantities(quota.spec.hard)


def _slug(stack) -> str:
    return stack.name.split("-", 1)[1]


# --------------------------------------------------------------------------- tenant stacks


def test_low_tenant_up_tier_change_suspend_destroy(project_stacks, kube, tenant_database_url):
    stack = project_stacks("tenant")
    slug = _slug(stack)
    config = tenant_config(slug, "low", ["prod"], tenant_database_url)
    stack.set_config(**config)

    # 1. A low tenant comes up, under the pack, with nothing for the pack to say.
    up = stack.up(policy_packs=[POLICY_PACK])
    assert up.summary.result == "succeeded"
    assert stack.policy_events() == []
    assert up.outputs["namespaces"].value == {"prod": naming.namespace_name(slug, "prod")}
    assert_environment(kube, tenant_database_url, slug=slug, tier_name="low", environment="prod",
                       license=config["license"], replicas=1)
    assert kube_missing(kube.core.read_namespace, naming.namespace_name(slug, "dev"))

    # 2. Tier change low -> mid: the preview shows the new quota and a new dev environment.
    mid_license = license_jwt(slug, "mid")
    stack.set_config(tier="mid", environments=["dev", "prod"], license=Secret(mid_license))
    preview = stack.preview(policy_packs=[POLICY_PACK])
    steps = stack.steps()
    ops = {name: step.op.value for name, step in steps.items()}
    assert stack.policy_events() == []
    assert set(preview.change_summary) <= {"same", "create", "update"}, preview.change_summary
    assert not {"delete", "replace"} & set(ops.values())

    quota_step = steps["prod-namespace-quota"]
    assert quota_step.op.value == "update"
    assert quota_step.old.inputs["spec"]["hard"] == get_tier("low").quota_for("prod").hard()
    assert quota_step.new.inputs["spec"]["hard"] == get_tier("mid").quota_for("prod").hard()
    # The namespace's tier label changes in place: the namespace is not replaced.
    assert ops["prod-namespace-namespace"] == "update"
    assert steps["prod-namespace-namespace"].new.inputs["metadata"]["labels"][
        naming.TIER_LABEL] == "mid"
    assert ops["prod-server-deployment"] == "update"  # the server is sized by the tier
    dev_namespace = steps["dev-namespace-namespace"]
    assert dev_namespace.op.value == "create"
    assert dev_namespace.new.inputs["metadata"]["name"] == naming.namespace_name(slug, "dev")
    dev_quota = steps["dev-namespace-quota"]
    assert dev_quota.op.value == "create"
    assert dev_quota.new.inputs["spec"]["hard"] == get_tier("mid").quota_for("dev").hard()
    dev_created = {name for name, op in ops.items() if name.startswith("dev") and op == "create"}
    prod_resources = {name for name in ops if name.startswith("prod")}
    assert {name.replace("dev", "prod", 1) for name in dev_created} == prod_resources
    assert preview.change_summary["create"] == len(dev_created)
    # A preview changes nothing.
    assert _namespace_quota(kube, slug, "prod") == _quantities(get_tier("low").quota_for("prod").hard())
    assert kube_missing(kube.core.read_namespace, naming.namespace_name(slug, "dev"))

    up = stack.up(policy_packs=[POLICY_PACK])
    assert up.summary.result == "succeeded"
    assert up.summary.resource_changes.get("create") == len(dev_created)
    for environment in ("dev", "prod"):
        assert_environment(kube, tenant_database_url, slug=slug, tier_name="mid", environment=environment,
                           license=mid_license, replicas=1)
    assert _namespace_quota(kube, slug, "prod") != _quantities(get_tier("low").quota_for("prod").hard())

    # 3. Suspension: every server scaled to zero, nothing else touched.
    stack.set_config(suspended=True)
    up = stack.up(policy_packs=[POLICY_PACK])
    assert up.summary.result == "succeeded"
    assert stack.policy_events() == []  # the advisory replicas rule agrees with the label
    updated = {name for name, step in stack.steps().items()
               if step.op.value == "update" and not step.type.startswith("pulumi:providers:")}
    assert updated == {"dev-server-deployment", "prod-server-deployment"}
    assert up.outputs["suspended"].value is True
    for environment in ("dev", "prod"):
        deployment = kube.apps.read_namespaced_deployment(SERVER_NAME, naming.namespace_name(slug, environment))
        assert deployment.spec.replicas == 0
        assert deployment.metadata.labels[naming.SUSPENDED_LABEL] == "true"

    # 4. Destroy: namespaces finalized and gone, schemas and roles dropped.
    destroyed = stack.destroy()
    assert destroyed.summary.result == "succeeded"
    for environment in ("dev", "prod"):
        assert_environment_gone(kube, tenant_database_url, slug, environment)
    assert kube.core.list_namespace(label_selector=f"{naming.TENANT_LABEL}={slug}").items == []
    assert stack.resource_count() == 0


def test_mid_tenant_passes_the_pack_and_comes_up(project_stacks, kube, tenant_database_url):
    stack = project_stacks("tenant")
    slug = _slug(stack)
    config = tenant_config(slug, "mid", ["dev", "prod"], tenant_database_url)
    stack.set_config(**config)

    # The project's own tenant stack passes every rule of the pack, advisory ones included.
    preview = stack.preview(policy_packs=[POLICY_PACK])
    assert stack.policy_events() == []
    assert set(preview.change_summary) == {"create"}
    kinds = {step.type.rsplit(":", 1)[1] for step in stack.steps().values()}
    assert {"Namespace", "NetworkPolicy", "Deployment", "ResourceQuota", "TenantSchema"} <= kinds

    up = stack.up(policy_packs=[POLICY_PACK])
    assert up.summary.result == "succeeded"
    assert up.summary.resource_changes == {"create": preview.change_summary["create"]}
    assert up.outputs["tier"].value == "mid"
    for environment in ("dev", "prod"):
        assert_environment(kube, tenant_database_url, slug=slug, tier_name="mid", environment=environment,
                           license=config["license"], replicas=1)
    # Each environment gets its own profile from the catalog.
    assert _namespace_quota(kube, slug, "dev") != _namespace_quota(kube, slug, "prod")

    # A second update finds nothing to do: what the provider reads back matches the program.
    again = stack.up(policy_packs=[POLICY_PACK])
    assert set(again.summary.resource_changes) == {"same"}

    assert stack.destroy().summary.result == "succeeded"
    for environment in ("dev", "prod"):
        assert_environment_gone(kube, tenant_database_url, slug, environment)


# --------------------------------------------------------------------------- dedicated cluster


@pytest.fixture
def dedicated_baseline(kube, shared_baseline):
    """The dedicated tier's PriorityClass must not exist before the test. The platform
    namespace and class do: the session's shared baseline declares them too, and the
    dedicated stack's destroy deletes them (one cluster plays both parts here), so the
    shared baseline is restored afterwards."""
    names = [PLATFORM_PRIORITY_CLASS, get_tier("high").priority_class_name]
    if not kube_missing(kube.scheduling.read_priority_class, names[1]):
        pytest.fail(f"PriorityClass {names[1]} exists already on the local cluster (a dedicated-<slug> "
                    "stack is up?); destroy that stack before running this test")
    yield names
    if not kube_missing(kube.scheduling.read_priority_class, names[1]):
        kube.scheduling.delete_priority_class(names[1])
    shared_baseline.restore()


def test_dedicated_stack_previews_comes_up_and_is_destroyed(project_stacks, kube, tenant_database_url,
                                                            dedicated_baseline):
    stack = project_stacks("dedicated")
    slug = _slug(stack)
    tier = get_tier("high")
    minimum = tier.billing.minimum
    committed = Compute(minimum.cpu_m * 2, minimum.memory_mi * 2)  # above the minimum: quotas grow
    environments = ["prod", "qa"]  # a standard and a custom environment
    config = tenant_config(slug, tier.name, environments, tenant_database_url,
                           committed=committed.as_resources())
    stack.set_config(**config)

    preview = stack.preview(policy_packs=[POLICY_PACK])
    assert stack.policy_events() == []
    assert set(preview.change_summary) == {"create"}
    steps = stack.steps()
    baseline_steps = {"baseline-platform-namespace", *(f"baseline-{name}" for name in dedicated_baseline)}
    assert baseline_steps <= set(steps)
    assert steps["baseline-platform-namespace"].new.inputs["metadata"]["name"] == \
        naming.PLATFORM_NAMESPACE
    assert {name for name in steps if name.endswith("-namespace-namespace")} == {
        f"{environment}-namespace-namespace" for environment in environments}
    for name in dedicated_baseline[1:]:
        assert kube_missing(kube.scheduling.read_priority_class, name)  # a preview applies nothing

    up = stack.up(policy_packs=[POLICY_PACK])
    assert up.summary.result == "succeeded"
    assert up.outputs["committed"].value == {"cpu_m": committed.cpu_m, "memory_mi": committed.memory_mi}

    platform = kube.core.read_namespace(naming.PLATFORM_NAMESPACE)
    assert naming.pod_security_labels().items() <= platform.metadata.labels.items()
    assert platform.metadata.labels[naming.MANAGED_BY_LABEL] == naming.MANAGED_BY
    assert kube.scheduling.read_priority_class(PLATFORM_PRIORITY_CLASS).value == PLATFORM_PRIORITY
    tenant_class = kube.scheduling.read_priority_class(tier.priority_class_name)
    assert tenant_class.value == tier.priority
    assert tenant_class.preemption_policy == "Never" and not tenant_class.global_default
    for environment in environments:
        assert_environment(kube, tenant_database_url, slug=slug, tier_name=tier.name, environment=environment,
                           license=config["license"], replicas=1, committed=committed)
    # Committed tiers size quotas from the commitment: each environment gets its share.
    prod_quota = _namespace_quota(kube, slug, "prod")
    assert prod_quota["requests.cpu"] == parse_quantity(
        tier.quota_for("prod", committed).hard()["requests.cpu"])
    assert prod_quota != _quantities(tier.quota_for("prod").hard())

    assert stack.destroy().summary.result == "succeeded"
    for environment in environments:
        assert_environment_gone(kube, tenant_database_url, slug, environment)
    assert kube_missing(kube.core.read_namespace, naming.PLATFORM_NAMESPACE)
    for name in dedicated_baseline:
        assert kube_missing(kube.scheduling.read_priority_class, name)
