"""Each guardrail against a compliant object (what the components build) and a violating one."""

import copy

import pytest

from components import naming
from components.catalog import get_tier
from components.network_isolation import NetworkIsolationArgs, network_policies
from components.tenant_namespace import namespace_manifest
from components.tenant_server import TenantServerArgs, deployment_manifest
from policy import rules
from policy.kube import kubernetes_object, pod_spec
from tests.unit.component_fixtures import DATABASE, IMAGE, LICENSE, cluster

NAMESPACE = "tenant-demo-prod"
LABELS = naming.tenant_labels("demo", "mid", "prod")


def server(**overrides):
    args = TenantServerArgs(cluster=cluster(), namespace=NAMESPACE, image=IMAGE,
                            size=get_tier("mid").profile_for("prod").server, license=LICENSE,
                            priority_class="cameleer-tenant-mid", labels=LABELS, **overrides)
    return deployment_manifest(args, 0 if args.suspended else 1)


def container_of(deployment):
    return pod_spec(deployment)["containers"][0]


def changed(change):
    deployment = copy.deepcopy(server())
    change(deployment)
    return deployment


def tenant_namespace():
    return namespace_manifest(NAMESPACE, LABELS)


def test_components_build_compliant_workloads():
    deployment = server()
    for rule in (rules.privileged_containers, rules.host_access, rules.restricted_security_context,
                 rules.resource_limits, rules.pinned_images, rules.tenant_server_replicas, rules.probes):
        assert rule(deployment) == [], rule.__name__


def test_privileged_container():
    bad = changed(lambda d: container_of(d)["securityContext"].update(privileged=True))
    assert rules.privileged_containers(bad) == [
        "Deployment tenant-demo-prod/cameleer-server: container 'server' is privileged; "
        "remove securityContext.privileged or set it to false"]


def test_privileged_init_container_is_caught_too():
    def add_init(d):
        pod_spec(d)["initContainers"] = [{"name": "setup", "image": IMAGE, "securityContext": {"privileged": True}}]
    assert "container 'setup' is privileged" in rules.privileged_containers(changed(add_init))[0]


@pytest.mark.parametrize("field", ["hostNetwork", "hostPID", "hostIPC"])
def test_host_namespaces(field):
    bad = changed(lambda d: pod_spec(d).update({field: True}))
    (message,) = rules.host_access(bad)
    assert f"uses {field}; remove {field}" in message and "cameleer-server" in message


def test_host_path_volume():
    bad = changed(lambda d: pod_spec(d)["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run"}}))
    (message,) = rules.host_access(bad)
    assert "volume 'docker' is a hostPath; use an emptyDir" in message


def test_root_container():
    def root(d):
        container_of(d)["securityContext"].pop("runAsNonRoot")
        pod_spec(d)["securityContext"].pop("runAsNonRoot")
    (message,) = rules.restricted_security_context(changed(root))
    assert "may run as root; set securityContext.runAsNonRoot: true" in message


def test_run_as_non_root_at_pod_level_suffices():
    compliant = changed(lambda d: container_of(d)["securityContext"].pop("runAsNonRoot"))
    assert rules.restricted_security_context(compliant) == []


def test_capabilities_not_dropped():
    bad = changed(lambda d: container_of(d)["securityContext"].update(capabilities={"add": ["NET_ADMIN"]}))
    (message,) = rules.restricted_security_context(bad)
    assert "set securityContext.capabilities.drop: [ALL]" in message


def test_added_capabilities_other_than_net_bind_service():
    bad = changed(lambda d: container_of(d)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]))
    assert rules.restricted_security_context(bad) == [
        "Deployment tenant-demo-prod/cameleer-server: container 'server' adds SYS_ADMIN to its capabilities; "
        "remove SYS_ADMIN from securityContext.capabilities.add (only NET_BIND_SERVICE may be added)"]
    allowed = changed(lambda d: container_of(d)["securityContext"]["capabilities"].update(
        add=["NET_BIND_SERVICE"]))
    assert rules.restricted_security_context(allowed) == []


def test_capabilities_kept_and_added_make_one_message_with_both_fixes():
    bad = changed(lambda d: container_of(d)["securityContext"].update(
        capabilities={"add": ["NET_BIND_SERVICE", "NET_ADMIN", "SYS_PTRACE"]}))
    (message,) = rules.restricted_security_context(bad)
    assert message.endswith(
        "keeps Linux capabilities and adds NET_ADMIN, SYS_PTRACE to its capabilities; "
        "set securityContext.capabilities.drop: [ALL] and remove NET_ADMIN, SYS_PTRACE from "
        "securityContext.capabilities.add (only NET_BIND_SERVICE may be added)")


def test_privilege_escalation_not_disabled():
    bad = changed(lambda d: container_of(d)["securityContext"].pop("allowPrivilegeEscalation"))
    (message,) = rules.restricted_security_context(bad)
    assert "set securityContext.allowPrivilegeEscalation: false" in message


def test_missing_limits():
    bad = changed(lambda d: container_of(d)["resources"].pop("limits"))
    (message,) = rules.resource_limits(bad)
    assert "has no cpu or memory limit; set resources.limits.cpu and resources.limits.memory" in message
    only_cpu = changed(lambda d: container_of(d)["resources"]["limits"].pop("memory"))
    assert "no memory limit" in rules.resource_limits(only_cpu)[0]


def test_unpinned_image():
    bad = changed(lambda d: container_of(d).update(image="ghcr.io/cameleer/server:1.0"))
    (message,) = rules.pinned_images(bad)
    assert "image 'ghcr.io/cameleer/server:1.0' is not pinned by digest; use <image>@sha256:<digest>" in message


def test_image_from_a_registry_not_allowed():
    bad = changed(lambda d: container_of(d).update(image="docker.io/evil/miner@sha256:" + "0" * 64))
    (message,) = rules.pinned_images(bad)
    assert "is not from an allowed registry (ghcr.io/cameleer)" in message
    assert rules.pinned_images(bad, allowed_registries=["docker.io/evil"]) == []


def test_tenant_namespace_labels():
    assert rules.tenant_namespace_labels(tenant_namespace()) == []
    bad = tenant_namespace()
    bad["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    del bad["metadata"]["labels"]["pod-security.kubernetes.io/warn-version"]
    del bad["metadata"]["labels"]["cameleer.io/tier"]
    assert rules.tenant_namespace_labels(bad) == [
        "Namespace tenant-demo-prod: label pod-security.kubernetes.io/enforce is 'baseline'; set it to 'restricted'",
        "Namespace tenant-demo-prod: label pod-security.kubernetes.io/warn-version is missing; set it to 'v1.34'",
        "Namespace tenant-demo-prod: tenant label cameleer.io/tier is missing or empty; set it (TenantNamespace does)",
    ]


def unlabelled_tenant_namespace():
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def test_an_unlabelled_namespace_named_like_a_tenants_is_a_tenant_namespace():
    messages = rules.tenant_namespace_labels(unlabelled_tenant_namespace())
    assert "Namespace tenant-demo-prod: label pod-security.kubernetes.io/enforce is missing; set it to " \
        "'restricted'" in messages
    assert "Namespace tenant-demo-prod: tenant label cameleer.io/tenant is missing or empty; set it " \
        "(TenantNamespace does)" in messages
    assert len(messages) == 9  # three modes x (level, version) + three tenant labels


def test_non_tenant_namespaces_are_not_tenant_namespaces():
    assert rules.tenant_namespace_labels({"kind": "Namespace", "metadata": {"name": "kube-system"}}) == []


def _stack(*objects):
    return [rules.StackObject(f"urn:{i}", obj) for i, obj in enumerate(objects)]


def test_tenant_namespace_with_default_deny_passes():
    policies = network_policies(NetworkIsolationArgs(cluster=cluster(), namespace=NAMESPACE, database=DATABASE))
    assert rules.is_default_deny(policies[0])
    assert rules.namespaces_without_default_deny(_stack(tenant_namespace(), *policies)) == []


def test_tenant_namespace_without_default_deny_is_reported_with_its_urn():
    policies = network_policies(NetworkIsolationArgs(cluster=cluster(), namespace=NAMESPACE, database=DATABASE))
    ((message, urn),) = rules.namespaces_without_default_deny(_stack(tenant_namespace(), *policies[1:]))
    assert urn == "urn:0"
    assert message.startswith("Namespace tenant-demo-prod has no default-deny NetworkPolicy")


def test_an_unlabelled_tenant_namespace_needs_a_default_deny_too():
    ((message, urn),) = rules.namespaces_without_default_deny(_stack(unlabelled_tenant_namespace()))
    assert urn == "urn:0" and message.startswith("Namespace tenant-demo-prod has no default-deny NetworkPolicy")
    policies = network_policies(NetworkIsolationArgs(cluster=cluster(), namespace=NAMESPACE, database=DATABASE))
    assert rules.namespaces_without_default_deny(_stack(unlabelled_tenant_namespace(), *policies)) == []


def test_a_deny_in_another_namespace_does_not_count():
    deny = network_policies(NetworkIsolationArgs(cluster=cluster(), namespace="tenant-other-prod", database=DATABASE))[0]
    assert len(rules.namespaces_without_default_deny(_stack(tenant_namespace(), deny))) == 1


@pytest.mark.parametrize("spec", [
    {"podSelector": {}, "policyTypes": ["Ingress"]},
    {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress", "Egress"]},
    {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{}]},
])
def test_partial_denies_are_not_default_deny(spec):
    assert not rules.is_default_deny({"kind": "NetworkPolicy", "metadata": {"namespace": NAMESPACE}, "spec": spec})


def test_replicas_advisory():
    assert rules.tenant_server_replicas(server(suspended=True)) == []
    stopped = changed(lambda d: d["spec"].update(replicas=0))
    assert "0 replicas for a tenant that is not suspended" in rules.tenant_server_replicas(stopped)[0]
    running_suspended = server(suspended=True)
    running_suspended["spec"]["replicas"] = 2
    assert "2 replicas for a suspended tenant; set replicas to 0" in rules.tenant_server_replicas(running_suspended)[0]


def test_probes_advisory():
    bad = changed(lambda d: container_of(d).pop("readinessProbe"))
    (message,) = rules.probes(bad)
    assert "container 'server' has no readinessProbe; add it" in message


def test_cronjob_pod_spec_is_found():
    cronjob = {"kind": "CronJob", "metadata": {"name": "c", "namespace": "n"}, "spec": {"jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "job", "securityContext": {"privileged": True}}]}}}}}}
    assert rules.privileged_containers(cronjob) == [
        "CronJob n/c: container 'job' is privileged; remove securityContext.privileged or set it to false"]
    assert rules.probes(cronjob) == []


# ------------------------------------------------------------------ resource shapes


def test_typed_kubernetes_resources_are_their_props():
    props = {"metadata": {"name": "web", "namespace": "n"}, "spec": server()["spec"]}
    obj = kubernetes_object("kubernetes:apps/v1:Deployment", props)
    assert obj["kind"] == "Deployment" and obj["apiVersion"] == "apps/v1"
    assert obj["metadata"] == props["metadata"] and obj["spec"] == props["spec"]
    bad = copy.deepcopy(props)
    pod_spec({"kind": "Deployment", **bad})["hostNetwork"] = True
    assert rules.host_access(kubernetes_object("kubernetes:apps/v1:Deployment", bad))


def test_a_typed_resources_own_api_version_and_kind_props_agree_with_its_type():
    # The SDK sends apiVersion and kind as inputs too; the object is the same either way.
    assert kubernetes_object("kubernetes:apps/v1:Deployment", server()) == server()


@pytest.mark.parametrize("resource_type, api_version, kind", [
    ("kubernetes:core/v1:Namespace", "v1", "Namespace"),
    ("kubernetes:core/v1:Secret", "v1", "Secret"),
    ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "networking.k8s.io/v1", "NetworkPolicy"),
    ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("kubernetes:scheduling.k8s.io/v1:PriorityClass", "scheduling.k8s.io/v1", "PriorityClass"),
    ("kubernetes:batch/v1:CronJob", "batch/v1", "CronJob"),
])
def test_api_version_comes_from_the_type_token(resource_type, api_version, kind):
    obj = kubernetes_object(resource_type, {"metadata": {"name": "x"}})
    assert (obj["apiVersion"], obj["kind"]) == (api_version, kind)


def test_a_typed_tenant_namespace_is_checked_like_a_manifest():
    namespace = tenant_namespace()
    props = {"metadata": namespace["metadata"]}
    assert rules.tenant_namespace_labels(kubernetes_object("kubernetes:core/v1:Namespace", props)) == []
    del props["metadata"]["labels"]["cameleer.io/tier"]
    assert rules.tenant_namespace_labels(kubernetes_object("kubernetes:core/v1:Namespace", props))


@pytest.mark.parametrize("resource_type, props", [
    ("pulumi-python:dynamic/postgres:TenantSchema", {"identifier": "x"}),
    ("pulumi-python:dynamic/random:RandomPassword", {"length": 32}),
    ("kubernetes:yaml:ConfigFile", {}),
    ("pulumi:providers:kubernetes", {"kubeconfig": "[secret]"}),
    ("cameleer:tenancy:TenantNamespace", {}),
    # The retired dynamic provider's shape is no longer read.
    ("pulumi-python:dynamic/kubernetes:Deployment", {"manifest": {"kind": "Deployment", "spec": {}}}),
])
def test_other_resources_are_ignored(resource_type, props):
    assert kubernetes_object(resource_type, props) is None
