"""One tenant environment's namespace, sized and locked down by its tier."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import naming
from components.catalog import Compute, Tier
from components.base import Component
from components.kube import manifest
from components.cluster import Cluster

SERVER_ACCOUNT = "cameleer-server"
LICENSE_SECRET = "cameleer-license"
DATABASE_SECRET = "cameleer-database"
RBAC = "rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class TenantNamespaceArgs:
    cluster: Cluster
    slug: str
    tier: Tier
    environment: str
    # Dedicated customers' committed resources; sizes the quota on committed tiers.
    committed: Compute | None = None

    def __post_init__(self) -> None:
        # Fail before anything is registered: the name and quota must be computable.
        self.tier.quota_for(self.environment, self.committed)
        naming.namespace_name(self.slug, self.environment)


class TenantNamespace(Component):
    """`tenant-<slug>-<env>` with Pod Security `restricted`, a quota and limit range from
    the tier, and the tenant server's service account with the least it needs: read its own
    config maps and its two secrets."""

    namespace: str
    service_account: str
    labels: dict[str, str]

    def __init__(self, name: str, args: TenantNamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:tenancy:TenantNamespace", name, opts)
        self.namespace = naming.namespace_name(args.slug, args.environment)
        self.service_account = SERVER_ACCOUNT
        self.labels = naming.tenant_labels(args.slug, args.tier.name, args.environment)

        namespace = self.kube_object(f"{name}-namespace", args.cluster,
                                     namespace_manifest(self.namespace, self.labels))
        inside = [namespace]
        for suffix, body in policy_manifests(self.namespace, self.labels, args).items():
            self.kube_object(f"{name}-{suffix}", args.cluster, body, depends_on=inside)
        role = self.kube_object(f"{name}-server-role", args.cluster,
                                server_role(self.namespace, self.labels), depends_on=inside)
        self.kube_object(f"{name}-server-role-binding", args.cluster,
                         server_role_binding(self.namespace, self.labels), depends_on=[*inside, role])

        self.register_outputs({"namespace": self.namespace, "serviceAccount": self.service_account})


def namespace_manifest(namespace: str, labels: dict[str, str]) -> dict:
    return manifest("v1", "Namespace", namespace, labels={**labels, **naming.pod_security_labels()})


def policy_manifests(namespace: str, labels: dict[str, str], args: TenantNamespaceArgs) -> dict[str, dict]:
    """Quota, limit range and service account, keyed by resource-name suffix."""
    profile = args.tier.profile_for(args.environment)
    quota = args.tier.quota_for(args.environment, args.committed)
    return {
        "quota": manifest("v1", "ResourceQuota", "tenant-quota", namespace=namespace, labels=labels,
                          spec={"hard": quota.hard()}),
        "limits": manifest("v1", "LimitRange", "tenant-limits", namespace=namespace, labels=labels,
                           spec={"limits": profile.container_defaults.limits()}),
        # The token is mounted only where a pod asks for it (the tenant server does).
        "server-account": manifest("v1", "ServiceAccount", SERVER_ACCOUNT, namespace=namespace,
                                   labels=labels, automountServiceAccountToken=False),
    }


def server_role(namespace: str, labels: dict[str, str]) -> dict:
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
         "resourceNames": [LICENSE_SECRET, DATABASE_SECRET]},
    ]
    return manifest(RBAC, "Role", SERVER_ACCOUNT, namespace=namespace, labels=labels, rules=rules)


def server_role_binding(namespace: str, labels: dict[str, str]) -> dict:
    return manifest(
        RBAC, "RoleBinding", SERVER_ACCOUNT, namespace=namespace, labels=labels,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVER_ACCOUNT},
        subjects=[{"kind": "ServiceAccount", "name": SERVER_ACCOUNT, "namespace": namespace}],
    )
