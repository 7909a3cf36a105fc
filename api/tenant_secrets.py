"""Each tenant's secrets in the KV v2 engine, and who may read them.

Paths (mount ``tenants``):

* ``<slug>/license``           the tenant's current license JWT
* ``<slug>/database-<env>``    an environment's database credentials (written by the stack
                               into the environment's Secret, copied here after each update)
* ``<slug>/usage-credential``  the key id and secret its servers sign usage reports with

A tenant's servers read them with a token of their own: OpenBao's Kubernetes auth method
verifies the pod's projected service-account token (audience ``openbao``) with the
cluster's TokenReview API, and the role ``tenant-<slug>`` admits only the ``cameleer-server``
account of that tenant's namespaces, with the policy ``cameleer-tenant-<slug>`` (read
``tenants/data/<slug>/*``, nothing else). The role lives on the auth mount of the tenant's
cluster (``components.naming.secrets_auth_mount``: the configured mount for the platform's own
cluster, ``<mount>-<cluster>`` for every other), since only that mount checks that cluster's
tokens. The names are in ``components.naming``: the tenant server's pod is told them too.
Deleting the tenant removes its paths, its role and its policy; a tenant that moved to another
cluster loses its role on the old cluster's mount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions

from components.naming import (
    SECRETS_AUTH_MOUNT, SECRETS_MOUNT, SECRETS_TOKEN_AUDIENCE, namespace_name, secrets_auth_mount, secrets_policy,
    secrets_role, validate_slug,
)
from stacks.clusters import DEFAULT_LOCAL_CLUSTER
from components.tenant_namespace import SERVER_ACCOUNT

from api.vault import VaultConnection

LICENSE = "license"
USAGE_CREDENTIAL = "usage-credential"
DATABASE_PREFIX = "database-"


def database(environment: str) -> str:
    return f"{DATABASE_PREFIX}{environment}"
TOKEN_TTL = "1h"


@dataclass(frozen=True)
class TenantAccess:
    policy: str
    role: str
    namespaces: tuple[str, ...]
    mount: str


class AuthMountMissing(Exception):
    """The secrets server has no Kubernetes auth mount for the tenant's cluster: retrying
    cannot help until an operator mounts and configures it."""


class TenantSecrets:
    def __init__(self, vault: VaultConnection, *, kubernetes_mount: str = SECRETS_AUTH_MOUNT,
                 platform_cluster: str = DEFAULT_LOCAL_CLUSTER) -> None:
        self._vault = vault
        self.mount = SECRETS_MOUNT
        self.kubernetes_mount = kubernetes_mount
        self.platform_cluster = platform_cluster

    @classmethod
    def from_settings(cls, settings: Any, vault: VaultConnection) -> TenantSecrets:
        return cls(vault, kubernetes_mount=settings.vault_kubernetes_mount, platform_cluster=settings.platform_cluster)

    def auth_mount(self, cluster: str) -> str:
        """The Kubernetes auth mount of ``cluster``'s service accounts."""
        return secrets_auth_mount(cluster, platform_cluster=self.platform_cluster, mount=self.kubernetes_mount)

    # -- secrets --------------------------------------------------------------------------

    def path(self, slug: str, name: str) -> str:
        return f"{validate_slug(slug)}/{name}"

    def write(self, slug: str, name: str, data: dict[str, str]) -> bool:
        """Store ``data`` at ``<slug>/<name>``; False when it already holds exactly that (no
        new version is written, so retrying a step changes nothing)."""
        if self.read(slug, name) == data:
            return False
        self._call(f"writing {self.mount}/{self.path(slug, name)}",
                   lambda c: c.secrets.kv.v2.create_or_update_secret(self.path(slug, name), secret=data,
                                                                     mount_point=self.mount))
        return True

    def read(self, slug: str, name: str) -> dict[str, str] | None:
        def read(client: hvac.Client) -> dict[str, str] | None:
            try:
                response = client.secrets.kv.v2.read_secret_version(
                    self.path(slug, name), mount_point=self.mount, raise_on_deleted_version=False)
            except hvac.exceptions.InvalidPath:
                return None
            return response["data"]["data"]

        return self._call(f"reading {self.mount}/{self.path(slug, name)}", read)

    # -- access -------------------------------------------------------------------------

    def grant(self, slug: str, environments: Iterable[str], cluster: str) -> TenantAccess:
        """The tenant's policy, and its Kubernetes role for its environments' server account on
        the auth mount of ``cluster`` (writing them again with the same content changes nothing)."""
        access = TenantAccess(secrets_policy(slug), secrets_role(slug),
                              tuple(namespace_name(slug, env) for env in environments), self.auth_mount(cluster))
        policy = f'path "{self.mount}/data/{validate_slug(slug)}/*" {{\n  capabilities = ["read"]\n}}\n'

        def grant(client: hvac.Client) -> None:
            client.sys.create_or_update_policy(access.policy, policy)
            try:
                client.auth.kubernetes.create_role(
                    access.role, bound_service_account_names=[SERVER_ACCOUNT],
                    bound_service_account_namespaces=list(access.namespaces), policies=[access.policy],
                    audience=SECRETS_TOKEN_AUDIENCE, ttl=TOKEN_TTL, max_ttl=TOKEN_TTL, mount_point=access.mount)
            except hvac.exceptions.InvalidPath:  # "no handler for route": nothing is mounted there
                raise AuthMountMissing(
                    f"the secrets server has no Kubernetes auth mount auth/{access.mount} for cluster {cluster!r}: "
                    f"enable and configure it (scripts/services.sh does for the local clusters), then retry"
                ) from None

        self._call(f"granting {access.role} its secrets", grant)
        return access

    def revoke(self, slug: str, cluster: str) -> str | None:
        """Delete the tenant's role from the auth mount of ``cluster``; the role's path when it
        was there (None on a retry, or when that cluster has no mount)."""
        return self._call(f"removing {secrets_role(slug)} from cluster {cluster}",
                          lambda client: self._delete_role(client, slug, cluster))

    def remove(self, slug: str, cluster: str | None) -> list[str]:
        """Delete every path of the tenant (all versions), its role on the mount of ``cluster``
        (None: it was never placed) and its policy; what was removed (nothing on a retried delete)."""
        def remove(client: hvac.Client) -> list[str]:
            removed = []
            for name in self._names(client, slug):
                client.secrets.kv.v2.delete_metadata_and_all_versions(self.path(slug, name), mount_point=self.mount)
                removed.append(f"{self.mount}/{self.path(slug, name)}")
            if cluster is not None and (role := self._delete_role(client, slug, cluster)):
                removed.append(role)
            client.sys.delete_policy(secrets_policy(slug))
            return removed

        return self._call(f"removing the secrets of {slug}", remove)

    def _delete_role(self, client: hvac.Client, slug: str, cluster: str) -> str | None:
        mount, role = self.auth_mount(cluster), secrets_role(slug)
        try:
            client.auth.kubernetes.read_role(role, mount_point=mount)
        except hvac.exceptions.InvalidPath:  # no such role, or no such mount
            return None
        client.auth.kubernetes.delete_role(role, mount_point=mount)
        return f"auth/{mount}/role/{role}"

    def remove_databases_except(self, slug: str, environments: Iterable[str]) -> list[str]:
        """Delete the credentials of environments the tenant no longer has."""
        keep = {database(env) for env in environments}

        def prune(client: hvac.Client) -> list[str]:
            stale = [name for name in self._names(client, slug) if name.startswith(DATABASE_PREFIX) and name not in keep]
            for name in stale:
                client.secrets.kv.v2.delete_metadata_and_all_versions(self.path(slug, name), mount_point=self.mount)
            return stale

        return self._call(f"removing stale database credentials of {slug}", prune)

    def _names(self, client: hvac.Client, slug: str) -> list[str]:
        try:
            listed = client.secrets.kv.v2.list_secrets(validate_slug(slug), mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return []
        return [name for name in listed["data"]["keys"] if not name.endswith("/")]

    def _call(self, action: str, request: Callable[[hvac.Client], Any]) -> Any:
        return self._vault.call(action, request)
