"""The three stack programs. Each validates its whole configuration first, then declares
resources; a configuration error therefore never leaves a half-registered stack."""

from __future__ import annotations

import pulumi

from components.catalog import Placement, tiers_placed
from components.cluster import Cluster, ExistingCluster
from components.cluster_baseline import ClusterBaseline, ClusterBaselineArgs
from components.tenant_environment import TenantEnvironment, TenantEnvironmentArgs
from stacks.clusters import ClusterLookupError, ClusterSecretsUnavailable, kubeconfig_content
from stacks.config import (
    NAMESPACE,
    StackConfigError,
    StackName,
    TenantSettings,
    database_password_key,
    read_plain,
    secrets_present,
    shared_cluster_settings,
    tenant_settings,
)


def tenant_program(stack: StackName) -> None:
    """`tenant-<slug>`: a shared-tier tenant's environments on a shared cluster."""
    config = pulumi.Config(NAMESPACE)
    settings = tenant_settings(stack, read_plain(config), secrets_present(config))
    target = ExistingCluster(_cluster(settings.cluster), settings.cluster_cidrs)
    _tenant_environments(settings, target, config)


def dedicated_program(stack: StackName) -> None:
    """`dedicated-<slug>`: a customer's dedicated cluster, its baseline and environments."""
    config = pulumi.Config(NAMESPACE)
    settings = tenant_settings(stack, read_plain(config), secrets_present(config))
    target = ExistingCluster(_cluster(settings.cluster), settings.cluster_cidrs)
    baseline = ClusterBaseline("baseline", ClusterBaselineArgs(target=target, tiers=(settings.tier,)))
    _tenant_environments(settings, target, config, depends_on=[baseline])
    committed = settings.committed
    pulumi.export("committed", {"cpu_m": committed.cpu_m, "memory_mi": committed.memory_mi} if committed else None)


def shared_cluster_program(stack: StackName) -> None:
    """`shared-<cluster>`: the baseline of a shared cluster that hosts shared-tier tenants."""
    config = pulumi.Config(NAMESPACE)
    settings = shared_cluster_settings(stack, read_plain(config))
    target = ExistingCluster(_cluster(settings.cluster), settings.cluster_cidrs)
    baseline = ClusterBaseline("baseline", ClusterBaselineArgs(
        target=target, tiers=tiers_placed(Placement.SHARED)))
    pulumi.export("cluster", settings.cluster)
    pulumi.export("platformNamespace", baseline.platform_namespace)
    pulumi.export("priorityClasses", baseline.priority_classes)


def _tenant_environments(settings: TenantSettings, target: ExistingCluster, config: pulumi.Config,
                         depends_on: list[pulumi.Resource] | None = None) -> None:
    admin_url = config.require_secret("databaseAdminUrl")
    license_jwt = config.require_secret("license")
    environments = {
        environment: TenantEnvironment(environment, TenantEnvironmentArgs(
            target=target, slug=settings.slug, tier=settings.tier, environment=environment,
            image=settings.image, database=settings.database, database_admin_url=admin_url,
            license=license_jwt, suspended=settings.suspended, committed=settings.committed,
            rollout_timeout=settings.rollout_timeout, secrets_auth_mount=settings.secrets_auth_mount,
            secrets_address=settings.secrets_address, control_plane_url=settings.control_plane_url,
            database_password=config.get_secret(database_password_key(environment)),
        ), pulumi.ResourceOptions(depends_on=depends_on or []))
        for environment in settings.environments
    }
    pulumi.export("cluster", settings.cluster)
    pulumi.export("slug", settings.slug)
    pulumi.export("tier", settings.tier.name)
    pulumi.export("suspended", settings.suspended)
    pulumi.export("namespaces", {env: item.namespace for env, item in environments.items()})
    pulumi.export("servers", {env: f"{item.namespace}/{item.server}" for env, item in environments.items()})
    pulumi.export("databaseSchemas", {env: item.database_schema for env, item in environments.items()})


def _cluster(name: str) -> Cluster:
    try:
        return Cluster(name, kubeconfig_content(name))
    except ClusterSecretsUnavailable as error:
        raise pulumi.RunError(f"{NAMESPACE}:cluster: {error}") from None   # transient, not bad config
    except ClusterLookupError as error:
        raise StackConfigError(f"{NAMESPACE}:cluster: {error}") from None
