"""Network isolation of one tenant namespace.

Default-deny for ingress and egress, then allow only: DNS, traffic inside the namespace,
ingress from the platform namespace, egress to the shared database, and egress to the
public internet (never to private, link-local, carrier-grade NAT or cluster ranges, which
is where other tenants live).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi

from components import naming
from components.endpoints import DatabaseEndpoint
from components.base import Component
from components.kube import manifest
from components.cluster import Cluster

NETWORKING = "networking.k8s.io/v1"
DEFAULT_DENY = "default-deny"
NON_PUBLIC_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",  # link-local, including cloud metadata endpoints
    "100.64.0.0/10",  # carrier-grade NAT, used by some CNIs for pods
)


@dataclass(frozen=True)
class NetworkIsolationArgs:
    cluster: Cluster
    namespace: str
    database: DatabaseEndpoint
    # Pod and service networks of the cluster, on top of the non-public ranges.
    cluster_cidrs: tuple[str, ...] = ()
    platform_namespace: str = naming.PLATFORM_NAMESPACE
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for cidr in self.cluster_cidrs:
            ipaddress.ip_network(cidr)


class NetworkIsolation(Component):
    policy_names: list[str]

    def __init__(self, name: str, args: NetworkIsolationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:tenancy:NetworkIsolation", name, opts)
        policies = network_policies(args)
        self.policy_names = [policy["metadata"]["name"] for policy in policies]
        deny = self.kube_object(f"{name}-{DEFAULT_DENY}", args.cluster, policies[0])
        # The allowances go in after the deny, so there is no moment of open traffic.
        for policy in policies[1:]:
            self.kube_object(f"{name}-{policy['metadata']['name']}", args.cluster, policy,
                             depends_on=[deny])
        self.register_outputs({"policies": self.policy_names})


def network_policies(args: NetworkIsolationArgs) -> list[dict]:
    """The namespace's NetworkPolicies, default-deny first."""
    everything = {}

    def policy(name: str, **spec) -> dict:
        return manifest(NETWORKING, "NetworkPolicy", name, namespace=args.namespace, labels=args.labels,
                        spec={"podSelector": everything, **spec})

    return [
        policy(DEFAULT_DENY, policyTypes=["Ingress", "Egress"]),
        policy("allow-dns", policyTypes=["Egress"], egress=[{
            "to": [{"namespaceSelector": _namespace_named("kube-system"),
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }]),
        policy("allow-same-namespace", policyTypes=["Ingress", "Egress"],
               ingress=[{"from": [{"podSelector": everything}]}],
               egress=[{"to": [{"podSelector": everything}]}]),
        policy("allow-from-platform", policyTypes=["Ingress"],
               ingress=[{"from": [{"namespaceSelector": _namespace_named(args.platform_namespace)}]}]),
        policy("allow-database", policyTypes=["Egress"], egress=[{
            "to": [{"ipBlock": {"cidr": args.database.cidr}}],
            "ports": [{"protocol": "TCP", "port": args.database.port}],
        }]),
        policy("allow-internet", policyTypes=["Egress"], egress=[{
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": internet_exceptions(args.cluster_cidrs)}}],
        }]),
    ]


def internet_exceptions(cluster_cidrs: tuple[str, ...]) -> list[str]:
    """Non-public ranges plus the cluster's own IPv4 ranges that they do not already cover."""
    covered = [ipaddress.ip_network(cidr) for cidr in NON_PUBLIC_RANGES]
    extra = []
    for cidr in cluster_cidrs:
        network = ipaddress.ip_network(cidr)
        if network.version == 4 and not any(network.subnet_of(big) for big in covered):
            extra.append(cidr)
    return [*NON_PUBLIC_RANGES, *extra]


def _namespace_named(namespace: str) -> dict:
    return {"matchLabels": {naming.NAMESPACE_NAME_LABEL: namespace}}
