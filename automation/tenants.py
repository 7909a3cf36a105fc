"""Tenant stacks as the control plane sees them: a tenant's spec in, a stack's config out.

The control-plane service knows tenants (slug, tier, environments, license, suspension);
the stack programs know `cameleer:` config keys. This module is the one translation
between them, plus the platform-wide settings every tenant stack shares (server image,
tenant database, cluster) and the readiness check the service runs after an update.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.catalog import get_tier
from components.naming import TENANT_LABEL, namespace_name
from components.tenant_server import SERVER_NAME

from .naming import StackKind, stack_name
from .workspace import Secret

# The demo server image; production sets CAMELEER_TENANT_IMAGE to the released digest.
DEFAULT_TENANT_IMAGE = (
    "ghcr.io/cameleer/server@sha256:4f5e1c3b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
)
_PLACEMENT_KINDS = {"shared": StackKind.TENANT, "dedicated": StackKind.DEDICATED}


class TenantSpecError(ValueError):
    """The tenant cannot be expressed as a stack (unknown placement, missing platform setting)."""


@dataclass(frozen=True)
class TenantSpec:
    slug: str
    placement: str  # "shared[:<cluster>]" | "dedicated"
    tier: str
    environments: tuple[str, ...]
    license_jwt: str = field(repr=False)
    suspended: bool = False

    @property
    def stack_name(self) -> str:
        return stack_name_for(self.slug, self.placement)


def stack_name_for(slug: str, placement: str) -> str:
    """`tenant-<slug>` for a shared placement (`shared` or `shared:<cluster>`), else `dedicated-<slug>`."""
    kind = _PLACEMENT_KINDS.get(placement.split(":", 1)[0])
    if kind is None:
        raise TenantSpecError(f"unknown placement {placement!r}; expected one of {sorted(_PLACEMENT_KINDS)}")
    return stack_name(kind, slug)


@dataclass(frozen=True)
class TenantPlatform:
    """What every tenant stack shares, from CAMELEER_TENANT_* (see .cameleer/services.env)."""

    image: str
    database_endpoint: str
    database_admin_url: str = field(repr=False)
    kubeconfig: str | None = None
    cluster_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TenantPlatform:
        env = os.environ if environ is None else environ
        admin_url = env.get("CAMELEER_TENANT_DATABASE_ADMIN_URL")
        endpoint = env.get("CAMELEER_TENANT_DATABASE_ENDPOINT")
        if not admin_url or not endpoint:
            raise TenantSpecError(
                "CAMELEER_TENANT_DATABASE_ADMIN_URL and CAMELEER_TENANT_DATABASE_ENDPOINT must be set "
                "(scripts/services.sh writes them into .cameleer/services.env)"
            )
        cidrs = tuple(c for c in env.get("CAMELEER_TENANT_CLUSTER_CIDRS", "").split(",") if c)
        return cls(
            image=env.get("CAMELEER_TENANT_IMAGE", DEFAULT_TENANT_IMAGE),
            database_endpoint=endpoint,
            database_admin_url=admin_url,
            kubeconfig=env.get("KUBECONFIG"),
            cluster_cidrs=cidrs,
        )


def stack_config(spec: TenantSpec, platform: TenantPlatform) -> dict[str, Any]:
    """The `cameleer:` config of the tenant's stack; secrets wrapped as `Secret`."""
    config: dict[str, Any] = {
        "slug": spec.slug,
        "tier": spec.tier,
        "environments": list(spec.environments),
        "image": platform.image,
        "databaseEndpoint": platform.database_endpoint,
        "databaseAdminUrl": Secret(platform.database_admin_url),
        "license": Secret(spec.license_jwt),
        "suspended": spec.suspended,
    }
    if platform.kubeconfig:
        config["kubeconfig"] = platform.kubeconfig
    if platform.cluster_cidrs:
        config["clusterCidrs"] = list(platform.cluster_cidrs)
    tier = get_tier(spec.tier)
    if tier.requires_commitment:
        minimum = tier.billing.minimum
        config["committed"] = {"cpu": f"{minimum.cpu_m}m", "memory": f"{minimum.memory_mi}Mi"}
    return config


@dataclass(frozen=True)
class Readiness:
    ready: bool
    problems: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        return "all objects present as the program says" if self.ready else "; ".join(self.problems)


def check_readiness(spec: TenantSpec, kubeconfig: str | None) -> Readiness:
    """Each environment's namespace is Active and labelled for the tenant, and its server
    Deployment exists with the replica count the suspension flag asks for.

    The local cluster has no nodes, so a rollout is never awaited: the check is that the
    cluster holds what the program declared.
    """
    from kubernetes import client, config as kube_config
    from kubernetes.client.exceptions import ApiException

    api_client = kube_config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    problems: list[str] = []
    for environment in spec.environments:
        namespace = namespace_name(spec.slug, environment)
        try:
            ns = core.read_namespace(namespace)
            deployment = apps.read_namespaced_deployment(SERVER_NAME, namespace)
        except ApiException as exc:
            problems.append(f"{namespace}: {'missing' if exc.status == 404 else exc.reason}")
            continue
        problems += _namespace_problems(ns, spec, namespace)
        replicas = deployment.spec.replicas or 0
        if spec.suspended and replicas:
            problems.append(f"{namespace}/{SERVER_NAME}: {replicas} replicas, expected 0 (suspended)")
        if not spec.suspended and not replicas:
            problems.append(f"{namespace}/{SERVER_NAME}: scaled to zero but the tenant is not suspended")
    return Readiness(ready=not problems, problems=tuple(problems))


def _namespace_problems(ns: Any, spec: TenantSpec, name: str) -> list[str]:
    problems = []
    if ns.status.phase != "Active":
        problems.append(f"{name}: phase {ns.status.phase}")
    if (ns.metadata.labels or {}).get(TENANT_LABEL) != spec.slug:
        problems.append(f"{name}: label {TENANT_LABEL} is not {spec.slug!r}")
    return problems

