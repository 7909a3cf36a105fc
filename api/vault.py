"""The service's client of its Vault-API server (OpenBao locally): one connection pool per
thread, and one rule for its failures (sealed, unreachable or refused: retry later)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from api.settings import ServiceNotConfigured

T = TypeVar("T")
TIMEOUT_SECONDS = 10


class VaultNotConfigured(ServiceNotConfigured):
    """No Vault-API server is configured: the service refuses to start."""


class SecretsUnavailable(Exception):
    """The secrets server cannot answer now; the message says why."""

    problem = "secrets-unavailable"
    retry_after = 10


class VaultConnection:
    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self._token = token
        self._local = threading.local()

    def __repr__(self) -> str:  # never print the token
        return f"VaultConnection({self.address!r})"

    @classmethod
    def from_settings(cls, settings: Any) -> VaultConnection:
        if not settings.vault_addr or settings.vault_token is None:
            raise VaultNotConfigured(
                "no signing backend: set VAULT_ADDR and VAULT_TOKEN (or CAMELEER_VAULT_*) to a Vault or "
                "OpenBao server with the transit and KV engines; tokens and licenses are signed there and "
                "there is no local key to fall back to (scripts/services.sh runs one locally)")
        return cls(settings.vault_addr, settings.vault_token.get_secret_value())

    def client(self) -> hvac.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = hvac.Client(url=self.address, token=self._token, timeout=TIMEOUT_SECONDS)
        return client

    def call(self, action: str, request: Callable[[hvac.Client], T],
             unavailable: type[SecretsUnavailable] = SecretsUnavailable) -> T:
        try:
            return request(self.client())
        except hvac.exceptions.VaultDown as exc:
            raise unavailable(f"{action}: the secrets server is sealed") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise unavailable(f"{action}: the secrets server is unreachable ({type(exc).__name__})") from None
        except hvac.exceptions.Forbidden as exc:
            raise unavailable(f"{action}: permission denied by the secrets server") from exc
