"""The pack's wiring: policies see typed pulumi-kubernetes resources, report with the URN,
honour config; and what the components register passes the mandatory policies."""

import copy

import pulumi
import pytest
from pulumi_policy import EnforcementLevel, PolicyResource, PolicyResourceOptions, ResourceValidationArgs, \
    ResourceValidationPolicy, StackValidationArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.catalog import get_tier
from components.tenant_environment import TenantEnvironment, TenantEnvironmentArgs
from policy import pack
from tests.unit.component_fixtures import ADMIN_URL, DATABASE, IMAGE, LICENSE, target
from tests.unit.pulumi_mocks import run, use_mocks
from tests.unit.test_policy_rules import server, tenant_namespace

OPTIONS = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                additional_secret_outputs=[], custom_timeouts=None)
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def policy(name):
    return next(p for p in pack.POLICIES if p.name == name)


def validate(name, resource_type, props, config=None, urn="urn:x"):
    reported = []
    args = ResourceValidationArgs(resource_type, props, urn, "x", OPTIONS, None, config or {})
    policy(name).validate(args, lambda message, urn=None: reported.append((message, urn)))
    return reported


def validate_stack(resources):
    reported = []
    policy("tenant-namespace-default-deny").validate(
        StackValidationArgs(resources), lambda message, urn=None: reported.append((message, urn)))
    return reported


def policy_resource(resource_type, props, urn):
    return PolicyResource(resource_type, props, urn, urn.rsplit("::", 1)[-1], OPTIONS, None, None, [], {})


def privileged_deployment():
    deployment = copy.deepcopy(server())
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    return deployment


def test_pack_name_and_enforcement():
    assert pack.PACK_NAME == "cameleer-guardrails"
    levels = {p.name: p.enforcement_level for p in pack.POLICIES}
    assert levels["no-privileged-containers"] is EnforcementLevel.MANDATORY
    assert levels["tenant-namespace-default-deny"] is EnforcementLevel.MANDATORY
    assert levels["probes"] is EnforcementLevel.ADVISORY
    assert levels["tenant-server-replicas"] is EnforcementLevel.ADVISORY


def test_typed_deployment_violation_is_reported_with_its_urn():
    reported = validate("no-privileged-containers", DEPLOYMENT, privileged_deployment())
    assert len(reported) == 1 and reported[0][1] == "urn:x"
    assert "container 'server' is privileged" in reported[0][0]


def test_typed_props_without_api_version_and_kind_are_checked_too():
    deployment = privileged_deployment()
    props = {"metadata": deployment["metadata"], "spec": deployment["spec"]}
    assert len(validate("no-privileged-containers", DEPLOYMENT, props)) == 1


@pytest.mark.parametrize("name", [p.name for p in pack.POLICIES if isinstance(p, ResourceValidationPolicy)])
def test_no_policy_reads_a_secrets_unknown_data(name):
    """In a preview a Secret's data from a password not generated yet is unknown, and the
    policy SDK's proxy fails the policy that reads it (as it hands props over to policies)."""
    secret = unknown_checking_proxy({"metadata": {"name": "credentials", "namespace": "tenant-acme-prod"},
                                     "stringData": UNKNOWN_STRING_VALUE, "type": "Opaque"})
    assert validate(name, "kubernetes:core/v1:Secret", secret) == []


def test_the_retired_dynamic_shape_is_not_checked():
    assert validate("no-privileged-containers", "pulumi-python:dynamic/kubernetes:Deployment",
                    {"manifest": privileged_deployment()}) == []


def test_allowed_registries_come_from_policy_config():
    props = server()
    assert validate("pinned-images", DEPLOYMENT, props) == []
    reported = validate("pinned-images", DEPLOYMENT, props, {"allowedRegistries": ["registry.internal"]})
    assert "not from an allowed registry (registry.internal)" in reported[0][0]


def test_stack_policy_finds_a_namespace_without_default_deny():
    namespace = policy_resource("kubernetes:core/v1:Namespace", tenant_namespace(), "urn:ns")
    assert [urn for _, urn in validate_stack([namespace])] == ["urn:ns"]


def test_an_unlabelled_tenant_namespace_draws_the_label_and_default_deny_policies():
    props = {"metadata": {"name": "tenant-demo-prod"}}
    assert len(validate("tenant-namespace-labels", "kubernetes:core/v1:Namespace", props)) == 9
    namespace = policy_resource("kubernetes:core/v1:Namespace", props, "urn:ns")
    assert [urn for _, urn in validate_stack([namespace])] == ["urn:ns"]


def test_an_added_capability_is_reported_with_its_urn():
    deployment = copy.deepcopy(server())
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    ((message, urn),) = validate("restricted-security-context", DEPLOYMENT, deployment)
    assert urn == "urn:x" and "adds SYS_ADMIN to its capabilities" in message


# ------------------------------------------------------------------ what the components register


@pytest.fixture(scope="module")
def registered():
    mocks = use_mocks()
    run(lambda: TenantEnvironment("prod", TenantEnvironmentArgs(
        target=target(), slug="demo", tier=get_tier("mid"), environment="prod", image=IMAGE,
        database=DATABASE, database_admin_url=pulumi.Output.secret(ADMIN_URL),
        license=pulumi.Output.secret(LICENSE))))
    return mocks.registered


MANDATORY = [p.name for p in pack.POLICIES
             if p.enforcement_level is EnforcementLevel.MANDATORY and isinstance(p, ResourceValidationPolicy)]


def test_six_mandatory_resource_policies():
    assert len(MANDATORY) == 6


@pytest.mark.parametrize("name", MANDATORY)
def test_a_tenant_environment_passes_every_mandatory_resource_policy(registered, name):
    checked = 0
    for registration in registered:
        assert validate(name, registration.type, registration.manifest, urn=registration.urn) == [], \
            registration.name
        checked += registration.is_kube_object
    assert checked == 17


def test_a_tenant_environment_passes_the_stack_policy_and_fails_without_its_deny(registered):
    resources = [policy_resource(r.type, r.manifest, r.urn) for r in registered]
    assert validate_stack(resources) == []
    without_deny = [r for r in resources if not r.urn.endswith("::prod-network-default-deny")]
    assert len(without_deny) == len(resources) - 1
    (message, urn), = validate_stack(without_deny)
    assert urn.endswith("::prod-namespace-namespace")
    assert message.startswith("Namespace tenant-demo-prod has no default-deny NetworkPolicy")


def test_the_tenant_server_passes_the_advisory_policies_too(registered):
    (deployment,) = [r for r in registered if r.type == DEPLOYMENT]
    for name in ("tenant-server-replicas", "probes"):
        assert validate(name, deployment.type, deployment.manifest) == [], name
