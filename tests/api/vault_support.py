"""The local OpenBao server (started by scripts/services.sh) as the tests reach it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import hvac
import hvac.exceptions
import requests


def client() -> hvac.Client:
    """A root client of the local server; fails loudly when services.env was not sourced."""
    address, token = os.environ.get("VAULT_ADDR"), os.environ.get("VAULT_TOKEN")
    assert address and token, "VAULT_ADDR/VAULT_TOKEN unset: run the tests through scripts/test.sh (OpenBao)"
    return hvac.Client(url=address, token=token, timeout=10)


def destroy_transit_keys(names: Iterable[str], mount: str = "transit") -> None:
    """Destroy the keys a test session or benchmark created (a name it never used is skipped)."""
    from automation.transit import TransitKeys

    vault = client()
    keys = TransitKeys(vault.url, vault.token, mount)
    for name in names:
        keys.destroy_key(name)


def remove_tenant_secrets(slugs: Iterable[str]) -> None:
    """What a tenant delete removes from OpenBao, for tenants a test left behind: their paths,
    their policy and their role on every Kubernetes auth mount (wherever they were placed)."""
    from api.tenant_secrets import TenantSecrets
    from api.vault import VaultConnection
    from components.naming import secrets_role

    vault = client()
    secrets = TenantSecrets(VaultConnection(vault.url, vault.token))
    mounts = [path.rstrip("/") for path, method in vault.sys.list_auth_methods()["data"].items()
              if method["type"] == "kubernetes"]
    for slug in slugs:
        secrets.remove(slug, None)
        for mount in mounts:
            try:
                vault.auth.kubernetes.delete_role(secrets_role(slug), mount_point=mount)
            except hvac.exceptions.InvalidPath:  # another session's mount, disabled meanwhile
                pass


def ensure_auth_mount(mount: str) -> bool:
    """A Kubernetes auth mount at auth/<mount> (unconfigured: roles can be written, no login
    works); True when this call enabled it."""
    vault = client()
    if f"{mount}/" in vault.sys.list_auth_methods()["data"]:
        return False
    vault.sys.enable_auth_method("kubernetes", path=mount)
    return True


def disable_auth_mounts(mounts: Iterable[str]) -> None:
    """Disable auth mounts a test session enabled (their roles go with them)."""
    vault = client()
    for mount in mounts:
        vault.sys.disable_auth_method(mount)


def unseal_key() -> str:
    path = os.environ.get("CAMELEER_OPENBAO_UNSEAL_KEY_FILE")
    assert path, "CAMELEER_OPENBAO_UNSEAL_KEY_FILE unset: run the tests through scripts/test.sh"
    return Path(path).read_text().strip()


def unseal(key: str, timeout: float = 30.0) -> None:
    """Unseal and wait until the server is active again (raft elects its leader first)."""
    vault = client()
    vault.sys.submit_unseal_key(key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{vault.url}/v1/sys/health", timeout=5).status_code
        if status == 200:  # initialised, unsealed, active
            return
        time.sleep(0.2)
    raise AssertionError(f"OpenBao did not become active within {timeout:g} s of unsealing")
