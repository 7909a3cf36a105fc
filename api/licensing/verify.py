"""Offline license verification, as the tenant server does it.

Rules, strongest first:

* not EdDSA, unknown or retired key, bad signature, malformed, revoked -> ``INVALID``
* expired more than the expiry grace (7 days) ago -> ``INVALID``
* licensing API unreachable and the last successful check is older than the offline
  grace (24 hours), or unknown -> ``INVALID``
* status ``suspended`` -> ``SUSPENDED``: signature fine, features off
* expired within the grace -> ``GRACE_READ_ONLY``: runs read-only
* licensing API unreachable within the offline grace -> ``OFFLINE_GRACE``
* otherwise ``VALID``

This module needs only PyJWT and cryptography, not the database.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.auth.jws import TokenInvalid, verify

EXPIRY_GRACE = timedelta(days=7)
OFFLINE_GRACE = timedelta(hours=24)
CLOCK_SKEW = timedelta(minutes=5)
AUDIENCE = "cameleer-server"


class LicenseState(enum.StrEnum):
    VALID = "valid"
    OFFLINE_GRACE = "offline_grace"
    GRACE_READ_ONLY = "grace_read_only"
    SUSPENDED = "suspended"
    INVALID = "invalid"


@dataclass(frozen=True)
class LicenseVerdict:
    state: LicenseState
    reason: str
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.state is not LicenseState.INVALID

    @property
    def features_enabled(self) -> bool:
        return self.state in (LicenseState.VALID, LicenseState.OFFLINE_GRACE, LicenseState.GRACE_READ_ONLY)

    @property
    def read_only(self) -> bool:
        return self.state is LicenseState.GRACE_READ_ONLY

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "features_enabled": self.features_enabled,
            "read_only": self.read_only,
            "tenant_id": self.claims.get("tenant_id"),
            "tier": self.claims.get("tier"),
            "expires_at": self.claims.get("exp"),
        }


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    keys = {}
    for entry in jwks.get("keys", []):
        if entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519" and entry.get("kid"):
            key = jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(entry))
            if isinstance(key, Ed25519PublicKey):
                keys[entry["kid"]] = key
    return keys


def verify_license(
    token: str,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    now: datetime | None = None,
    api_reachable: bool = True,
    last_successful_check: datetime | None = None,
    expiry_grace: timedelta = EXPIRY_GRACE,
    offline_grace: timedelta = OFFLINE_GRACE,
) -> LicenseVerdict:
    now = now or datetime.now(UTC)
    try:
        claims = verify(
            token.strip(), keys, audience=AUDIENCE, verify_times=False, required=("exp", "iat", "tenant_id", "status")
        )
    except TokenInvalid as exc:
        return LicenseVerdict(LicenseState.INVALID, str(exc))
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    not_before = datetime.fromtimestamp(claims.get("nbf", claims["iat"]), UTC)
    if now + CLOCK_SKEW < not_before:
        return LicenseVerdict(LicenseState.INVALID, f"license is not valid before {not_before:%Y-%m-%d %H:%M}", claims)
    if claims["status"] == "revoked":
        return LicenseVerdict(LicenseState.INVALID, "license has been revoked", claims)
    if now > expires_at + expiry_grace:
        return LicenseVerdict(LicenseState.INVALID, f"license expired on {expires_at:%Y-%m-%d}, past the {expiry_grace.days}-day grace", claims)
    if not api_reachable and (last_successful_check is None or now - last_successful_check > offline_grace):
        return LicenseVerdict(
            LicenseState.INVALID,
            f"licensing API unreachable and no successful check within {offline_grace.total_seconds() / 3600:g} hours",
            claims,
        )
    if claims["status"] == "suspended":
        return LicenseVerdict(LicenseState.SUSPENDED, "tenant is suspended: features are off", claims)
    if now > expires_at:
        return LicenseVerdict(LicenseState.GRACE_READ_ONLY, f"license expired on {expires_at:%Y-%m-%d}: read-only grace period", claims)
    if not api_reachable:
        return LicenseVerdict(LicenseState.OFFLINE_GRACE, "licensing API unreachable: within the offline grace period", claims)
    return LicenseVerdict(LicenseState.VALID, "license is valid", claims)
