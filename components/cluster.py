"""Where a stack's Kubernetes objects go: the cluster target.

Every cluster today already exists and is reached through a kubeconfig whose *content* the
stack program receives at run time (never a path: stack config and state hold nothing of
the machine that ran them). A cloud cluster provider (EKS, GKE, ...) will be another
`ClusterTarget`: a component that creates the cluster and hands the same two things to the
rest of the stack, the connection the Kubernetes resources use and the cluster's internal
address ranges that tenant egress must not reach. Components depend on this protocol,
never on how the cluster came to be.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class Cluster:
    """One Kubernetes cluster, reached through one explicit `kubernetes.Provider`.

    `name` is the cluster's name in the registry; it is also the provider's cluster
    identifier, so new credentials for the same cluster (a rotated certificate, another
    machine's kubeconfig) update the provider instead of replacing every object on it.
    The provider is created on first use, inside the program that uses it.
    """

    name: str
    kubeconfig: pulumi.Input[str] = field(repr=False)
    _provider: list[k8s.Provider] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def provider(self) -> k8s.Provider:
        if not self._provider:
            self._provider.append(k8s.Provider(
                f"cluster-{self.name}",
                kubeconfig=pulumi.Output.secret(self.kubeconfig),
                cluster_identifier=self.name,
                # Out-of-band edits of a ConfigMap's or Secret's data are corrected in place;
                # without these the provider replaces the object (delete, then create).
                enable_config_map_mutable=True,
                enable_secret_mutable=True,
            ))
        return self._provider[0]


class ClusterTarget(Protocol):
    @property
    def connection(self) -> Cluster:
        """How Kubernetes resources reach the cluster's API server."""
        ...

    @property
    def internal_cidrs(self) -> tuple[str, ...]:
        """Pod and service networks: excluded from tenant internet egress."""
        ...


@dataclass(frozen=True)
class ExistingCluster:
    """A cluster that exists already, reached through a kubeconfig."""

    connection: Cluster
    internal_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for cidr in self.internal_cidrs:
            ipaddress.ip_network(cidr)  # raises ValueError naming the bad value
