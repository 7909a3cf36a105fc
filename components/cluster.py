"""Where a stack's Kubernetes objects go: the cluster target.

Today every cluster already exists and is reached through a kubeconfig. A cloud cluster
provider (EKS, GKE, ...) will be another `ClusterTarget`: a component that creates the
cluster and hands the same two things to the rest of the stack, the connection the
Kubernetes resources use and the cluster's internal address ranges that tenant egress
must not reach. Components depend on this protocol, never on how the cluster came to be.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from components.providers.kubernetes import Cluster


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
