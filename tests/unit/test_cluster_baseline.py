import pytest

from components.catalog import Placement, get_tier, tiers_placed
from components.cluster_baseline import ClusterBaseline, ClusterBaselineArgs
from tests.unit.component_fixtures import target
from tests.unit.pulumi_mocks import PROVIDER_TYPE, run, use_mocks


def build(tiers):
    mocks = use_mocks(stack="shared-eu1")
    component = run(lambda: ClusterBaseline("baseline", ClusterBaselineArgs(target=target(), tiers=tiers)))
    return mocks, component


def test_type_token_and_children():
    mocks, _ = build(tiers_placed(Placement.SHARED))
    assert len(mocks.by_type("cameleer:cluster:ClusterBaseline")) == 1
    # Everything but the component itself and the cluster's provider is its child.
    assert [r.type for r in mocks.registered if r.type.startswith("pulumi:providers:")] == [PROVIDER_TYPE]
    children = mocks.children_of("baseline")
    assert len(children) == len(mocks.registered) - 2
    assert sorted(child.type for child in children) == [
        "kubernetes:core/v1:Namespace", *["kubernetes:scheduling.k8s.io/v1:PriorityClass"] * 3]


def test_every_object_is_on_the_cluster_provider():
    mocks, _ = build(tiers_placed(Placement.SHARED))
    (provider,) = mocks.providers()
    assert provider.name == "cluster-test"
    assert all(mocks.provider_of(r) is provider for r in mocks.kube_objects())


def test_platform_namespace_is_restricted():
    mocks, component = build(tiers_placed(Placement.SHARED))
    namespace = mocks.one("Namespace")
    assert namespace["metadata"]["name"] == component.platform_namespace == "cameleer-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "cameleer.io/tenant" not in namespace["metadata"]["labels"]


def test_objects_are_owned_by_the_stack_and_force_applied():
    mocks, _ = build(tiers_placed(Placement.SHARED))
    for manifest in (mocks.one("Namespace"), *mocks.manifests("PriorityClass")):
        annotations = manifest["metadata"]["annotations"]
        assert annotations["cameleer.io/owner"] == "cameleer/shared-eu1"
        assert annotations["pulumi.com/patchForce"] == "true"
        assert annotations["pulumi.com/patchFieldManager"] == "cameleer"


def test_shared_cluster_gets_the_shared_tiers_priority_classes():
    mocks, component = build(tiers_placed(Placement.SHARED))
    classes = {c["metadata"]["name"]: c for c in mocks.manifests("PriorityClass")}
    assert set(classes) == {"cameleer-platform", "cameleer-tenant-low", "cameleer-tenant-mid"}
    assert classes["cameleer-tenant-mid"]["value"] > classes["cameleer-tenant-low"]["value"]
    assert classes["cameleer-platform"]["value"] > classes["cameleer-tenant-mid"]["value"]
    assert sorted(component.priority_classes) == sorted(classes)


def test_tenant_classes_never_preempt_and_are_not_default():
    mocks, _ = build(tiers_placed(Placement.SHARED))
    for priority_class in mocks.manifests("PriorityClass"):
        assert priority_class["globalDefault"] is False
        if priority_class["metadata"]["name"].startswith("cameleer-tenant-"):
            assert priority_class["preemptionPolicy"] == "Never"


def test_dedicated_cluster_gets_its_tier_only():
    mocks, _ = build((get_tier("business"),))
    names = {c["metadata"]["name"] for c in mocks.manifests("PriorityClass")}
    assert names == {"cameleer-platform", "cameleer-tenant-business"}


def test_needs_a_tier():
    with pytest.raises(ValueError, match="at least one tier"):
        ClusterBaselineArgs(target=target(), tiers=())
