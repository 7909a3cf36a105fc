"""Request fingerprints: an HMAC of the canonical request body by a transit key.

Equal bodies give equal fingerprints (an Idempotency-Key replay is recognised), and what is
stored reveals nothing of a body's secrets (a signup's password): the HMAC key never
leaves the secrets server. The key is never rotated: a fingerprint must still match the
same body when the request is replayed days later.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from api.vault import VaultConnection


class RequestFingerprints:
    def __init__(self, vault: VaultConnection, key_name: str, *, mount: str = "transit") -> None:
        self._vault = vault
        self._key_name = key_name
        self._mount = mount
        self._key_ready = False

    @classmethod
    def from_settings(cls, settings: Any, vault: VaultConnection) -> RequestFingerprints:
        return cls(vault, settings.fingerprint_key, mount=settings.transit_mount)

    def of(self, payload: dict[str, Any]) -> str:
        """64 hex digits: HMAC-SHA256 of the payload's canonical JSON."""
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        if not self._key_ready:  # creating an existing key changes nothing
            self._vault.call(f"creating the transit key {self._key_name}",
                             lambda c: c.secrets.transit.create_key(self._key_name, mount_point=self._mount))
            self._key_ready = True
        response = self._vault.call(
            f"fingerprinting with {self._key_name}",
            lambda c: c.secrets.transit.generate_hmac(
                self._key_name, hash_input=base64.b64encode(canonical).decode(), algorithm="sha2-256",
                mount_point=self._mount))
        # "vault:v1:<base64 of the 32-byte HMAC>"
        return base64.b64decode(response["data"]["hmac"].rsplit(":", 1)[1]).hex()
