"""The pack's wiring: policies see both resource shapes, report with the URN, honour config."""

import copy

from pulumi_policy import EnforcementLevel, PolicyResource, PolicyResourceOptions, ResourceValidationArgs, \
    StackValidationArgs

from policy import pack
from tests.unit.test_policy_rules import server, tenant_namespace

OPTIONS = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                additional_secret_outputs=[], custom_timeouts=None)


def policy(name):
    return next(p for p in pack.POLICIES if p.name == name)


def validate(name, resource_type, props, config=None):
    reported = []
    args = ResourceValidationArgs(resource_type, props, "urn:x", "x", OPTIONS, None, config or {})
    policy(name).validate(args, lambda message, urn=None: reported.append((message, urn)))
    return reported


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


def test_dynamic_kube_object_violation_is_reported_with_its_urn():
    reported = validate("no-privileged-containers", "pulumi-python:dynamic/kubernetes:Deployment",
                        {"manifest": privileged_deployment()})
    assert len(reported) == 1 and reported[0][1] == "urn:x"


def test_native_kubernetes_deployment_is_checked_too():
    deployment = privileged_deployment()
    props = {"metadata": deployment["metadata"], "spec": deployment["spec"]}
    assert len(validate("no-privileged-containers", "kubernetes:apps/v1:Deployment", props)) == 1


def test_allowed_registries_come_from_policy_config():
    deployment = server()
    props = {"manifest": deployment}
    assert validate("pinned-images", "pulumi-python:dynamic/kubernetes:Deployment", props) == []
    reported = validate("pinned-images", "pulumi-python:dynamic/kubernetes:Deployment", props,
                        {"allowedRegistries": ["registry.internal"]})
    assert "not from an allowed registry (registry.internal)" in reported[0][0]


def test_stack_policy_finds_a_namespace_without_default_deny():
    namespace = PolicyResource("pulumi-python:dynamic/kubernetes:Namespace", {"manifest": tenant_namespace()},
                               "urn:ns", "prod-namespace", OPTIONS, None, None, [], {})
    reported = []
    policy("tenant-namespace-default-deny").validate(
        StackValidationArgs([namespace]), lambda message, urn=None: reported.append((message, urn)))
    assert [urn for _, urn in reported] == ["urn:ns"]
