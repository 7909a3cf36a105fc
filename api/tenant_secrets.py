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
``tenants/data/<slug>/*``, nothing else). The names are in ``components.naming``: the
tenant server's pod is told them too.
Deleting the tenant removes its paths, its role and its policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions

from components.naming import (
    SECRETS_MOUNT, SECRETS_TOKEN_AUDIENCE, namespace_name, secrets_policy, secrets_role, validate_slug,
)
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


class TenantSecrets:
    def __init__(self, vault: VaultConnection, *, kubernetes_mount: str = "kubernetes") -> None:
        self._vault = vault
        self.mount = SECRETS_MOUNT
        self.kubernetes_mount = kubernetes_mount

    @classmethod
    def from_settings(cls, settings: Any, vault: VaultConnection) -> TenantSecrets:
        return cls(vault, kubernetes_mount=settings.vault_kubernetes_mount)

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

    def grant(self, slug: str, environments: Iterable[str]) -> TenantAccess:
        """The tenant's policy and Kubernetes role for its environments' server account
        (writing them again with the same content changes nothing)."""
        access = TenantAccess(secrets_policy(slug), secrets_role(slug),
                              tuple(namespace_name(slug, env) for env in environments))
        policy = f'path "{self.mount}/data/{validate_slug(slug)}/*" {{\n  capabilities = ["read"]\n}}\n'

        def grant(client: hvac.Client) -> None:
            client.sys.create_or_update_policy(access.policy, policy)
            client.auth.kubernetes.create_role(
                access.role, bound_service_account_names=[SERVER_ACCOUNT],
                bound_service_account_namespaces=list(access.namespaces), policies=[access.policy],
                audience=SECRETS_TOKEN_AUDIENCE, ttl=TOKEN_TTL, max_ttl=TOKEN_TTL,
                mount_point=self.kubernetes_mount)

        self._call(f"granting {access.role} its secrets", grant)
        return access

    def remove(self, slug: str) -> list[str]:
        """Delete every path of the tenant (all versions), its role and its policy; what was
        removed (nothing on a retried delete)."""
        def remove(client: hvac.Client) -> list[str]:
            removed = []
            for name in self._names(client, slug):
                client.secrets.kv.v2.delete_metadata_and_all_versions(self.path(slug, name), mount_point=self.mount)
                removed.append(f"{self.mount}/{self.path(slug, name)}")
            try:
                client.auth.kubernetes.delete_role(secrets_role(slug), mount_point=self.kubernetes_mount)
            except hvac.exceptions.InvalidPath:
                pass
            client.sys.delete_policy(secrets_policy(slug))
            return removed

        return self._call(f"removing the secrets of {slug}", remove)

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
