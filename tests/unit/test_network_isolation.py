import ipaddress

import pytest

from components.network_isolation import NON_PUBLIC_RANGES, NetworkIsolation, NetworkIsolationArgs
from tests.unit.component_fixtures import DATABASE, cluster
from tests.unit.pulumi_mocks import run, use_mocks

NAMESPACE = "tenant-demo-prod"


def build(cluster_cidrs=("10.96.0.0/12", "198.18.0.0/15")):
    mocks = use_mocks()
    run(lambda: NetworkIsolation("prod-network", NetworkIsolationArgs(
        cluster=cluster(), namespace=NAMESPACE, database=DATABASE, cluster_cidrs=cluster_cidrs)))
    return mocks


def policies(mocks):
    return {p["metadata"]["name"]: p for p in mocks.manifests("NetworkPolicy")}


def test_component_type_and_children():
    mocks = build()
    assert len(mocks.by_type("cameleer:tenancy:NetworkIsolation")) == 1
    children = mocks.children_of("prod-network")
    assert len(children) == 6
    assert {child.type for child in children} == {"kubernetes:networking.k8s.io/v1:NetworkPolicy"}
    assert all(child.manifest["metadata"]["namespace"] == NAMESPACE for child in children)


def test_allowances_wait_for_the_default_deny():
    mocks = build()
    (deny,) = [r for r in mocks.kube("NetworkPolicy") if r.manifest["metadata"]["name"] == "default-deny"]
    others = [r for r in mocks.kube("NetworkPolicy") if r is not deny]
    assert len(others) == 5 and all(deny.urn in r.dependencies for r in others)


def test_default_deny_covers_ingress_and_egress_for_every_pod():
    deny = policies(build())["default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_dns_only_to_kube_dns_in_kube_system():
    (rule,) = policies(build())["allow-dns"]["spec"]["egress"]
    (peer,) = rule["to"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_same_namespace_both_ways_without_namespace_selectors():
    spec = policies(build())["allow-same-namespace"]["spec"]
    assert spec["ingress"] == [{"from": [{"podSelector": {}}]}]
    assert spec["egress"] == [{"to": [{"podSelector": {}}]}]


def test_ingress_from_the_platform_namespace_only():
    spec = policies(build())["allow-from-platform"]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"from": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "cameleer-system"}}}]}]


def test_egress_to_the_database_cidr_and_port():
    (rule,) = policies(build())["allow-database"]["spec"]["egress"]
    assert rule == {"to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]}


def test_internet_egress_excludes_private_and_cluster_ranges():
    (rule,) = policies(build())["allow-internet"]["spec"]["egress"]
    (peer,) = rule["to"]
    block = peer["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0"
    for cidr in (*NON_PUBLIC_RANGES, "198.18.0.0/15"):
        assert cidr in block["except"]
    assert "10.96.0.0/12" not in block["except"], "already inside 10.0.0.0/8; listed once"


def test_no_policy_admits_another_tenant_namespace():
    for policy in policies(build()).values():
        spec = policy["spec"]
        peers = [peer for rule in spec.get("ingress", []) for peer in rule["from"]]
        peers += [peer for rule in spec.get("egress", []) for peer in rule["to"]]
        for peer in peers:
            selector = peer.get("namespaceSelector")
            if selector is not None:
                assert selector != {}, f"{policy['metadata']['name']} opens every namespace"
                assert selector["matchLabels"]["kubernetes.io/metadata.name"] in ("kube-system", "cameleer-system")


def test_an_address_in_another_tenant_pod_range_is_not_reachable_via_internet_rule():
    (rule,) = policies(build())["allow-internet"]["spec"]["egress"]
    excepted = [ipaddress.ip_network(c) for c in rule["to"][0]["ipBlock"]["except"]]
    for address in ("10.244.3.7", "172.20.0.5", "192.168.1.1", "169.254.169.254", "100.64.0.1", "198.18.5.5"):
        assert any(ipaddress.ip_address(address) in net for net in excepted), address
    assert not any(ipaddress.ip_address("1.1.1.1") in net for net in excepted)


def test_invalid_cluster_cidr_is_refused():
    with pytest.raises(ValueError, match="10.0.0.1/8"):
        NetworkIsolationArgs(cluster=cluster(), namespace=NAMESPACE, database=DATABASE, cluster_cidrs=("10.0.0.1/8",))
