"""Clusters' kubeconfigs in the platform's KV v2 engine: ``platform/clusters/<name>``, field
``kubeconfig``. The database keeps only the reference (``<mount>/<path>``)."""

from __future__ import annotations

import hvac
import hvac.exceptions

from api.vault import VaultConnection

MOUNT = "platform"
PREFIX = "clusters"
FIELD = "kubeconfig"


def reference(name: str) -> str:
    return f"{MOUNT}/{PREFIX}/{name}"


def _split(ref: str) -> tuple[str, str]:
    mount, _, path = ref.partition("/")
    if not mount or not path:
        raise ValueError(f"a credentials reference is <mount>/<path>, not {ref!r}")
    return mount, path


class ClusterCredentials:
    def __init__(self, vault: VaultConnection) -> None:
        self._vault = vault

    def read(self, ref: str) -> str | None:
        """The kubeconfig content a reference names; None when there is none."""
        mount, path = _split(ref)

        def read(client: hvac.Client) -> str | None:
            try:
                response = client.secrets.kv.v2.read_secret_version(
                    path, mount_point=mount, raise_on_deleted_version=False)
            except hvac.exceptions.InvalidPath:
                return None
            return (response["data"]["data"] or {}).get(FIELD)

        return self._vault.call(f"reading {ref}", read)

    def write(self, ref: str, kubeconfig: str) -> bool:
        """Store the kubeconfig; False when it holds exactly that already (no new version)."""
        if self.read(ref) == kubeconfig:
            return False
        mount, path = _split(ref)
        self._vault.call(f"writing {ref}", lambda c: c.secrets.kv.v2.create_or_update_secret(
            path, secret={FIELD: kubeconfig}, mount_point=mount))
        return True

    def delete(self, ref: str) -> None:
        """Remove every version (nothing to do when it is gone already)."""
        mount, path = _split(ref)
        self._vault.call(f"deleting {ref}", lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(
            path, mount_point=mount))
