"""Signing keys that never leave the secrets server: one Ed25519 transit key per purpose.

Access tokens and licenses are signed by the transit engine of OpenBao (or Vault): the
service sends the JWS signing input and gets the signature back; no private key is ever
in this process, the platform database or a file. Each purpose has its own transit key and
its own JWKS document. A key's versions are the published keys: ``kid`` is
``<purpose>-v<version>``, the latest version signs, older versions verify until they are
retired. ``rotate`` adds a version; ``maintain`` rotates a key older than its rotation
period and retires (then trims from the server) every version that nothing still valid can
have been signed with: one whose successor is older than the purpose's overlap, which the
settings keep at least as long as the longest lifetime of what the purpose signs.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import hvac.exceptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.auth.jws import ALGORITHM, b64url, jwk, signing_input
from api.db.models import KeyPurpose, KeyStatus
from api.vault import SecretsUnavailable, VaultConnection

CACHE_SECONDS = 30.0
STALE_LIMIT_SECONDS = 600.0
# An unknown kid refreshes the published keys at most this often (a flood of forged kids
# must not become a flood of requests to the secrets server).
MISS_REFRESH_SECONDS = 5.0


class SigningUnavailable(SecretsUnavailable):
    """The secrets server cannot sign now (sealed, unreachable, refused): retry later."""

    problem = "signing-unavailable"


@dataclass(frozen=True)
class KeyVersion:
    purpose: KeyPurpose
    version: int
    public_key: Ed25519PublicKey = field(repr=False)
    created_at: datetime
    active: bool

    @property
    def kid(self) -> str:
        return kid_for(self.purpose, self.version)

    @property
    def status(self) -> str:
        return (KeyStatus.ACTIVE if self.active else KeyStatus.RETIRING).value


@dataclass(frozen=True)
class SignedToken:
    kid: str
    token: str


@dataclass(frozen=True)
class RetiredVersion:
    kid: str
    purpose: KeyPurpose


@dataclass(frozen=True)
class Maintenance:
    rotated: KeyVersion | None
    retired: list[str]


@dataclass(frozen=True)
class KeyPolicy:
    """How one purpose's key lives: its transit key name, how often it rotates, and how
    long a version keeps verifying after its successor took over."""

    key_name: str
    rotate_every: timedelta
    overlap: timedelta


def key_policies(settings: Any) -> dict[KeyPurpose, KeyPolicy]:
    """Each purpose's policy from the service settings; a version's overlap is the longest
    lifetime of what it signs (a license's includes its expiry grace) plus a margin. Audit
    checkpoints must verify for as long as the chain is kept: their versions never retire."""
    margin = timedelta(seconds=settings.signing_key_extra_overlap_seconds)
    license_lifetime = timedelta(days=settings.license_ttl_days + settings.license_expiry_grace_days)
    return {
        KeyPurpose.ACCESS: KeyPolicy(settings.access_signing_key, timedelta(days=settings.access_key_rotation_days),
                                     timedelta(seconds=settings.access_token_ttl_seconds) + margin),
        KeyPurpose.LICENSE: KeyPolicy(settings.license_signing_key, timedelta(days=settings.license_key_rotation_days),
                                      license_lifetime + margin),
        KeyPurpose.AUDIT: KeyPolicy(settings.audit_signing_key, timedelta(days=settings.audit_key_rotation_days),
                                    timedelta.max),
    }


def kid_for(purpose: KeyPurpose, version: int) -> str:
    return f"{purpose.value}-v{version}"


def parse_kid(kid: str) -> tuple[KeyPurpose, int] | None:
    purpose, _, version = kid.rpartition("-v")
    try:
        return KeyPurpose(purpose), int(version)
    except ValueError:
        return None


def _raw_signature(transit_signature: str) -> bytes:
    # "vault:v<version>:<base64 of the 64-byte Ed25519 signature>"
    return base64.b64decode(transit_signature.rsplit(":", 1)[1])


def _timestamp(value: str) -> datetime:
    # transit writes RFC 3339 with nanoseconds; seconds are all this module needs
    return datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)


class TransitSigner:
    def __init__(
        self,
        vault: VaultConnection,
        policies: Mapping[KeyPurpose, KeyPolicy],
        *,
        mount: str = "transit",
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._vault = vault
        self._policies = dict(policies)
        self._mount = mount
        self._cache_seconds = cache_seconds
        self._published: dict[KeyPurpose, tuple[float, list[KeyVersion]]] = {}
        self._last_miss_refresh: dict[KeyPurpose, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, vault: VaultConnection) -> TransitSigner:
        return cls(vault, key_policies(settings), mount=settings.transit_mount)

    # -- signing ------------------------------------------------------------------------

    def sign(self, purpose: KeyPurpose, claims: Mapping[str, Any], *, typ: str = "JWT") -> SignedToken:
        """A compact JWS of ``claims`` signed by the purpose's latest key version."""
        latest = self._latest(purpose)
        header = {"alg": ALGORITHM, "typ": typ, "kid": latest.kid}
        message = signing_input(header, claims)
        response = self._call(
            f"signing with {self._policies[purpose].key_name}",
            lambda c: c.secrets.transit.sign_data(
                self._policies[purpose].key_name, hash_input=base64.b64encode(message).decode(),
                key_version=latest.version, mount_point=self._mount))
        signature = _raw_signature(response["data"]["signature"])
        return SignedToken(kid=latest.kid, token=f"{message.decode()}.{b64url(signature)}")

    # -- publishing ---------------------------------------------------------------------

    def verification_keys(self, purpose: KeyPurpose, *, kid: str | None = None) -> dict[str, Ed25519PublicKey]:
        """The keys that verify ``purpose``'s tokens. Naming the ``kid`` being looked for lets
        a key rotated by another process be found before the cache expires."""
        versions = self._versions(purpose)
        if kid is not None and kid not in {v.kid for v in versions} and self._may_refresh_on_miss(purpose):
            versions = self._versions(purpose, fresh=True)
        return {v.kid: v.public_key for v in versions}

    def jwks(self, purpose: KeyPurpose) -> dict[str, list[dict[str, str]]]:
        return {"keys": [jwk(v.kid, v.public_key) for v in self._versions(purpose)]}

    def versions(self, purpose: KeyPurpose) -> list[KeyVersion]:
        return self._versions(purpose, fresh=True)

    # -- lifecycle ------------------------------------------------------------------------

    def rotate(self, purpose: KeyPurpose) -> KeyVersion:
        """A new version signs from now on; the previous ones keep verifying."""
        name = self._policies[purpose].key_name
        self._ensure_key(purpose)
        self._call(f"rotating {name}", lambda c: c.secrets.transit.rotate_key(name, mount_point=self._mount))
        return self._latest(purpose, fresh=True)

    def retire(self, kid: str) -> RetiredVersion | None:
        """Stop verifying ``kid`` and every older version of its key; None when ``kid`` is
        not a retiring version (unknown, already retired, or the active one)."""
        parsed = parse_kid(kid)
        if parsed is None or parsed[0] not in self._policies:
            return None
        purpose, version = parsed
        if not any(v.version == version and not v.active for v in self.versions(purpose)):
            return None
        self._retire_below(purpose, version + 1)
        return RetiredVersion(kid=kid, purpose=purpose)

    def maintain(self, purpose: KeyPurpose, *, now: datetime | None = None) -> Maintenance:
        """Rotate when the latest version is older than the rotation period; retire and trim
        the versions whose successor took over longer ago than the overlap."""
        now = now or datetime.now(UTC)
        policy = self._policies[purpose]
        versions = self.versions(purpose)
        rotated = None
        if now - versions[-1].created_at >= policy.rotate_every:
            rotated = self.rotate(purpose)
        by_version = {v.version: v for v in versions}
        lowest_needed = min(
            v.version for v in versions
            if v.active or now - by_version[v.version + 1].created_at < policy.overlap
        )
        retired = [v.kid for v in versions if v.version < lowest_needed]
        if retired:
            self._retire_below(purpose, lowest_needed)
        return Maintenance(rotated=rotated, retired=retired)

    # -- the transit key ----------------------------------------------------------------

    def _retire_below(self, purpose: KeyPurpose, version: int) -> None:
        name = self._policies[purpose].key_name

        def retire(client: hvac.Client) -> None:
            # Trimming deletes the versions below for good; transit needs both minimums set
            # first. Equal minimums are allowed, but hvac's update_key_configuration wants the
            # encryption one larger, so the configuration is written as plain data.
            client.write_data(f"{self._mount}/keys/{name}/config",
                              data={"min_decryption_version": version, "min_encryption_version": version})
            client.secrets.transit.trim_key(name, min_version=version, mount_point=self._mount)

        self._call(f"retiring versions of {name} below {version}", retire)
        self._versions(purpose, fresh=True)

    def _latest(self, purpose: KeyPurpose, *, fresh: bool = False) -> KeyVersion:
        return self._versions(purpose, fresh=fresh)[-1]

    def _versions(self, purpose: KeyPurpose, *, fresh: bool = False) -> list[KeyVersion]:
        with self._lock:
            cached = self._published.get(purpose)
            if not fresh and cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
                return cached[1]
        try:
            versions = self._read_versions(purpose)
        except SigningUnavailable:
            # Verifying with the keys read a moment ago stays safe while the server is away
            # (a retirement made meanwhile is seen when it is back); signing needs it anyway.
            if not fresh and cached is not None and time.monotonic() - cached[0] < STALE_LIMIT_SECONDS:
                return cached[1]
            raise
        with self._lock:
            self._published[purpose] = (time.monotonic(), versions)
        return versions

    def _read_versions(self, purpose: KeyPurpose) -> list[KeyVersion]:
        name = self._policies[purpose].key_name
        data = self._ensure_key(purpose)
        latest, lowest = data["latest_version"], max(data["min_decryption_version"], data.get("min_available_version", 0))
        versions = [
            KeyVersion(
                purpose=purpose,
                version=int(version),
                public_key=Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"])),
                created_at=_timestamp(entry["creation_time"]),
                active=int(version) == latest,
            )
            for version, entry in sorted(data["keys"].items(), key=lambda item: int(item[0]))
            if int(version) >= lowest
        ]
        if not versions:
            raise SigningUnavailable(f"the transit key {name} has no version that verifies")
        return versions

    def _ensure_key(self, purpose: KeyPurpose) -> dict[str, Any]:
        """The key's description, creating the key on first use (creating is idempotent)."""
        name = self._policies[purpose].key_name

        def read_or_create(client: hvac.Client) -> dict[str, Any]:
            transit = client.secrets.transit
            try:
                return transit.read_key(name, mount_point=self._mount)["data"]
            except hvac.exceptions.InvalidPath:
                transit.create_key(name, key_type="ed25519", mount_point=self._mount)
                return transit.read_key(name, mount_point=self._mount)["data"]

        return self._call(f"reading the transit key {name}", read_or_create)

    def _call(self, action: str, request: Callable[[hvac.Client], Any]) -> Any:
        return self._vault.call(action, request, SigningUnavailable)

    def _may_refresh_on_miss(self, purpose: KeyPurpose) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last_miss_refresh.get(purpose, 0.0) < MISS_REFRESH_SECONDS:
                return False
            self._last_miss_refresh[purpose] = now
            return True

