"""Per-stack encryption keys in a Vault-API server (OpenBao locally): create, destroy.

The stacks the service creates (`tenant-*`, `dedicated-*`) encrypt their secrets with their
own transit key (`hashivault://cameleer-stack-<stack>`, an aes256-gcm96 key), so reading one
tenant's state needs that tenant's key, and destroying the key after the stack is gone makes
every copy of its state and backups unreadable (crypto-shredding). Operators' hand-made
stacks keep the passphrase provider.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import hvac
import hvac.exceptions
import requests

from .errors import ErrorKind, OperationError

log = logging.getLogger(__name__)

KEY_PREFIX = "cameleer-stack-"
SERVICE_STACK_PREFIXES = ("tenant-", "dedicated-")
TRANSIT_MOUNT = "transit"


def key_name(stack: str) -> str:
    return f"{KEY_PREFIX}{stack}"


def unavailable(action: str, exc: Exception) -> OperationError:
    sealed = isinstance(exc, hvac.exceptions.VaultDown)
    reason = "sealed" if sealed else f"unreachable ({type(exc).__name__})"
    return OperationError(ErrorKind.TRANSIENT, f"{action}: the secrets server is {reason}", retry_after=10.0)


@dataclass(frozen=True)
class TransitKeys:
    address: str
    token: str = field(repr=False)
    mount: str = TRANSIT_MOUNT

    def _client(self) -> hvac.Client:
        return hvac.Client(url=self.address, token=self.token, timeout=10)

    def ensure(self, stack: str) -> str:
        """The stack's key, created if missing (creating an existing key changes nothing)."""
        name = key_name(stack)
        try:
            self._client().secrets.transit.create_key(name, key_type="aes256-gcm96", mount_point=self.mount)
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown) as exc:
            raise unavailable(f"creating the transit key {name}", exc) from None
        except hvac.exceptions.Forbidden as exc:
            raise OperationError(ErrorKind.CONFIG, f"creating the transit key {name}: permission denied") from exc
        return name

    def exists(self, stack: str) -> bool:
        try:
            self._client().secrets.transit.read_key(key_name(stack), mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return False
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown) as exc:
            raise unavailable(f"reading the transit key {key_name(stack)}", exc) from None
        return True

    def destroy(self, stack: str) -> bool:
        """Delete the stack's key for good; False when it did not exist (a retried delete)."""
        if not self.destroy_key(key_name(stack)):
            return False
        log.warning("destroyed the transit key %s: the state of %s can no longer be decrypted", key_name(stack), stack)
        return True

    def destroy_key(self, name: str) -> bool:
        """Delete the transit key ``name`` for good; False when it did not exist."""
        client = self._client()
        try:
            client.secrets.transit.update_key_configuration(name, deletion_allowed=True, mount_point=self.mount)
            client.secrets.transit.delete_key(name, mount_point=self.mount)
        except (hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest) as exc:
            if isinstance(exc, hvac.exceptions.InvalidRequest) and "no existing key" not in str(exc):
                raise
            return False
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown) as exc:
            raise unavailable(f"destroying the transit key {name}", exc) from None
        return True


@dataclass(frozen=True)
class StackSecrets:
    """The service's secrets providers: a transit key per service stack, else the passphrase."""

    transit: TransitKeys
    passphrase: str = field(repr=False)

    @staticmethod
    def uses_transit(stack: str) -> bool:
        return stack.startswith(SERVICE_STACK_PREFIXES)

    def provider_url(self, stack: str) -> str:
        return f"hashivault://{key_name(stack)}" if self.uses_transit(stack) else "passphrase"

    def env(self, stack: str) -> Mapping[str, str]:
        # Both, always: the engine reads whichever provider the stack's settings file names.
        return {"PULUMI_CONFIG_PASSPHRASE": self.passphrase,
                "VAULT_ADDR": self.transit.address, "VAULT_TOKEN": self.transit.token}

    def prepare(self, stack: str) -> None:
        if self.uses_transit(stack):
            self.transit.ensure(stack)

    def shred(self, stack: str) -> str | None:
        """Destroy the stack's key (after the stack is gone); the key's name if one was destroyed."""
        if self.uses_transit(stack) and self.transit.destroy(stack):
            return key_name(stack)
        return None
