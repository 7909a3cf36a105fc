"""Tenant stacks as the control plane sees them: a tenant's spec in, a stack's config out.

The control-plane service knows tenants (slug, tier, environments, license, suspension);
the stack programs know `cameleer:` config keys. This module is the one translation
between them, plus the platform-wide settings every tenant stack shares (server image,
tenant database, cluster). Whether a tenant's workloads run is `automation.readiness`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.catalog import get_tier
from components.naming import SECRETS_AUTH_MOUNT, secrets_auth_mount
from stacks.clusters import DEFAULT_LOCAL_CLUSTER
from stacks.config import base_url, database_password_key

from .kv import read_field
from .naming import StackKind, stack_name
from .workspace import Secret

# The demo server image; production sets CAMELEER_TENANT_IMAGE to the released digest.
DEFAULT_TENANT_IMAGE = (
    "ghcr.io/cameleer/server@sha256:4f5e1c3b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
)
_PLACEMENT_KINDS = {"shared": StackKind.TENANT, "dedicated": StackKind.DEDICATED}
# Where tenant servers reach OpenBao and the control plane (see TenantPlatform).
SECRETS_ADDRESS_ENV = "CAMELEER_TENANT_SECRETS_ADDRESS"
CONTROL_PLANE_URL_ENV = "CAMELEER_TENANT_CONTROL_PLANE_URL"


class TenantSpecError(ValueError):
    """The tenant cannot be expressed as a stack (unknown placement, missing platform setting)."""


@dataclass(frozen=True)
class TenantSpec:
    slug: str
    placement: str  # "shared:<cluster>" | "dedicated:<cluster>"
    tier: str
    environments: tuple[str, ...]
    license_jwt: str = field(repr=False)
    suspended: bool = False
    # Environment -> its database password, kept when the tenant moves to this stack.
    database_passwords: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def stack_name(self) -> str:
        return stack_name_for(self.slug, self.placement)


def stack_name_for(slug: str, placement: str) -> str:
    """`tenant-<slug>` for a shared placement (`shared:<cluster>`), `dedicated-<slug>` for a dedicated one."""
    kind = _PLACEMENT_KINDS.get(placement.split(":", 1)[0])
    if kind is None:
        raise TenantSpecError(f"unknown placement {placement!r}; expected one of {sorted(_PLACEMENT_KINDS)}")
    return stack_name(kind, slug)


def cluster_of(placement: str) -> str:
    """The cluster a placement names: `shared:eu1`, `dedicated:dc1`."""
    kind, _, cluster = placement.partition(":")
    if kind not in _PLACEMENT_KINDS:
        raise TenantSpecError(f"unknown placement {placement!r}; expected one of {sorted(_PLACEMENT_KINDS)}")
    if not cluster:
        raise TenantSpecError(f"placement {placement!r} names no cluster yet (the operation's place step chooses it)")
    return cluster


@dataclass(frozen=True)
class TenantPlatform:
    """What every tenant stack shares, from CAMELEER_TENANT_* (see .cameleer/services.env)."""

    image: str
    database_endpoint: str
    database_admin_url: str = field(repr=False)
    cluster_cidrs: tuple[str, ...] = ()
    rollout_timeout: str | None = None
    # The tenant servers' Kubernetes auth mounts (components.naming.secrets_auth_mount), as the
    # control plane reads them: CAMELEER_VAULT_KUBERNETES_MOUNT, CAMELEER_CLUSTER.
    secrets_auth_mount: str = SECRETS_AUTH_MOUNT
    platform_cluster: str = DEFAULT_LOCAL_CLUSTER
    # Base URLs as tenant clusters reach them, which need not be the control plane's own
    # (VAULT_ADDR, CAMELEER_PUBLIC_BASE_URL): OpenBao, and the control plane's API. None: unset,
    # and a tenant stack is refused (stack_config); a shared cluster's baseline needs neither.
    secrets_address: str | None = None
    control_plane_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TenantPlatform:
        env = os.environ if environ is None else environ
        admin_url = tenant_database_admin_url(env)
        endpoint = env.get("CAMELEER_TENANT_DATABASE_ENDPOINT")
        if not admin_url or not endpoint:
            raise TenantSpecError(
                "CAMELEER_TENANT_DATABASE_ENDPOINT and CAMELEER_TENANT_DATABASE_ADMIN_SECRET (a KV reference "
                "<mount>/<path> whose `url` field is the admin URL) or CAMELEER_TENANT_DATABASE_ADMIN_URL must be "
                "set (scripts/services.sh writes them into .cameleer/services.env)"
            )
        cidrs = tuple(c for c in env.get("CAMELEER_TENANT_CLUSTER_CIDRS", "").split(",") if c)
        return cls(
            image=env.get("CAMELEER_TENANT_IMAGE", DEFAULT_TENANT_IMAGE),
            database_endpoint=endpoint,
            database_admin_url=admin_url,
            cluster_cidrs=cidrs,
            rollout_timeout=env.get("CAMELEER_TENANT_ROLLOUT_TIMEOUT") or None,
            secrets_auth_mount=env.get("CAMELEER_VAULT_KUBERNETES_MOUNT") or SECRETS_AUTH_MOUNT,
            platform_cluster=env.get("CAMELEER_CLUSTER") or DEFAULT_LOCAL_CLUSTER,
            secrets_address=_platform_url(env, SECRETS_ADDRESS_ENV),
            control_plane_url=_platform_url(env, CONTROL_PLANE_URL_ENV),
        )


def _platform_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if not value:
        return None
    try:
        return base_url(value)
    except ValueError as error:
        raise TenantSpecError(f"{name}: {error}") from None


def tenant_database_admin_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The tenant databases' admin URL: CAMELEER_TENANT_DATABASE_ADMIN_URL, else the KV
    reference CAMELEER_TENANT_DATABASE_ADMIN_SECRET; None when neither is set."""
    env = os.environ if environ is None else environ
    return env.get("CAMELEER_TENANT_DATABASE_ADMIN_URL") or _admin_url_from_secrets_server(env)


def _admin_url_from_secrets_server(env: Mapping[str, str]) -> str | None:
    """The tenant databases' admin URL (a CREATEROLE-only role, never a superuser), read at
    each use from the secrets server, so a rotated password is used from the next update on."""
    reference = env.get("CAMELEER_TENANT_DATABASE_ADMIN_SECRET")
    address, token = env.get("BAO_ADDR") or env.get("VAULT_ADDR"), env.get("BAO_TOKEN") or env.get("VAULT_TOKEN")
    if not reference:
        return None
    if not address or not token:
        raise TenantSpecError("CAMELEER_TENANT_DATABASE_ADMIN_SECRET needs VAULT_ADDR and VAULT_TOKEN")
    return read_field(address, token, reference, "url")


def stack_config(spec: TenantSpec, platform: TenantPlatform) -> dict[str, Any]:
    """The `cameleer:` config of the tenant's stack; secrets wrapped as `Secret`.

    It names the cluster, never how to reach it: the kubeconfig is found at run time. The
    server is told its Kubernetes auth mount when it is not the default one, so a tenant of
    the platform's own cluster keeps the config it had before clusters had mounts of their own.
    The server is always told where OpenBao and the control plane are: without them it could
    neither read its secrets nor fetch its license, so a platform that has not set them gets
    a TenantSpecError, not a server that cannot work."""
    cluster = cluster_of(spec.placement)
    addresses = _server_addresses(platform)
    config: dict[str, Any] = {
        "slug": spec.slug,
        "tier": spec.tier,
        "environments": list(spec.environments),
        "cluster": cluster,
        "image": platform.image,
        "databaseEndpoint": platform.database_endpoint,
        "databaseAdminUrl": Secret(platform.database_admin_url),
        "license": Secret(spec.license_jwt),
        "suspended": spec.suspended,
        **addresses,
    }
    if platform.cluster_cidrs:
        config["clusterCidrs"] = list(platform.cluster_cidrs)
    for environment, password in spec.database_passwords.items():
        config[database_password_key(environment)] = Secret(password)
    if platform.rollout_timeout:
        config["rolloutTimeout"] = platform.rollout_timeout
    mount = secrets_auth_mount(cluster, platform_cluster=platform.platform_cluster, mount=platform.secrets_auth_mount)
    if mount != SECRETS_AUTH_MOUNT:
        config["secretsAuthMount"] = mount
    tier = get_tier(spec.tier)
    if tier.requires_commitment:
        minimum = tier.billing.minimum
        config["committed"] = {"cpu": f"{minimum.cpu_m}m", "memory": f"{minimum.memory_mi}Mi"}
    return config


def _server_addresses(platform: TenantPlatform) -> dict[str, str]:
    addresses = {(SECRETS_ADDRESS_ENV, "secretsAddress"): platform.secrets_address,
                 (CONTROL_PLANE_URL_ENV, "controlPlaneUrl"): platform.control_plane_url}
    missing = [env for (env, _), value in addresses.items() if not value]
    if missing:
        raise TenantSpecError(
            f"{' and '.join(missing)} must be set: where tenant servers reach OpenBao and the control plane, "
            "as base URLs (scripts/services.sh writes the local ones into .cameleer/services.env)")
    return {key: value for (_, key), value in addresses.items()}


def operator_settings(old_config: Mapping[str, Any], new_config: Mapping[str, Any]) -> dict[str, Any]:
    """The plain `cameleer:` settings of a stack's settings file (`old_config`, as read from the
    file) that `new_config` does not set: what operators set by hand (e.g. `driftCorrection`),
    to carry to the stack a tenant moves to. Encrypted values stay behind: they are readable
    only with the old stack's key."""
    carried = {}
    for key, value in old_config.items():
        namespace, _, name = key.partition(":")
        if namespace == "cameleer" and name not in new_config and not (isinstance(value, dict) and "secure" in value):
            carried[name] = value
    return carried


def baseline_config(platform: TenantPlatform) -> dict[str, Any]:
    """The `cameleer:` config of a shared cluster's baseline stack (`shared-<cluster>`)."""
    return {"clusterCidrs": list(platform.cluster_cidrs)} if platform.cluster_cidrs else {}
