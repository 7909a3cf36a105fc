"""What every cluster needs before tenants arrive: the platform namespace and the
tenant priority classes. Shared clusters carry the shared tiers' classes; a dedicated
cluster carries its customer's tier."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import naming
from components.catalog import Tier
from components.cluster import ClusterTarget
from components.base import Component
from components.kube import manifest

PLATFORM_PRIORITY_CLASS = "cameleer-platform"
PLATFORM_PRIORITY = 100_000
SCHEDULING = "scheduling.k8s.io/v1"


@dataclass(frozen=True)
class ClusterBaselineArgs:
    target: ClusterTarget
    # The tiers whose tenants this cluster runs.
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("a cluster baseline needs at least one tier to host")


class ClusterBaseline(Component):
    platform_namespace: str
    priority_classes: list[str]

    def __init__(self, name: str, args: ClusterBaselineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:cluster:ClusterBaseline", name, opts)
        cluster = args.target.connection
        self.platform_namespace = naming.PLATFORM_NAMESPACE
        self.kube_object(f"{name}-platform-namespace", cluster, platform_namespace_manifest())
        classes = priority_class_manifests(args.tiers)
        self.priority_classes = [cls["metadata"]["name"] for cls in classes]
        for priority_class in classes:
            self.kube_object(f"{name}-{priority_class['metadata']['name']}", cluster, priority_class)
        self.register_outputs({"platformNamespace": self.platform_namespace,
                               "priorityClasses": self.priority_classes})


def platform_namespace_manifest() -> dict:
    labels = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY, **naming.pod_security_labels()}
    return manifest("v1", "Namespace", naming.PLATFORM_NAMESPACE, labels=labels)


def priority_class_manifests(tiers: tuple[Tier, ...]) -> list[dict]:
    labels = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY}
    platform = manifest(SCHEDULING, "PriorityClass", PLATFORM_PRIORITY_CLASS, labels=labels,
                        value=PLATFORM_PRIORITY, globalDefault=False,
                        description="Cameleer platform components")
    # Tenant classes order the scheduling queue but never evict another tenant's pods.
    tenants = [
        manifest(SCHEDULING, "PriorityClass", tier.priority_class_name, labels=labels,
                 value=tier.priority, globalDefault=False, preemptionPolicy="Never",
                 description=f"Cameleer tenant workloads, tier {tier.name}")
        for tier in sorted(tiers, key=lambda tier: tier.priority)
    ]
    return [platform, *tenants]
