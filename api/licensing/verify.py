"""Offline license verification, as the tenant server does it.

Rules, strongest first:

* not EdDSA, unknown or retired key, bad signature, malformed, revoked -> ``INVALID``
* expired more than the expiry grace (7 days) ago -> ``INVALID``
* licensing API unreachable and the last successful check is older than the offline
  grace (24 hours), unknown, or later than now (a clock set back) -> ``INVALID``
* status ``suspended`` -> ``SUSPENDED``: signature fine, features off
* expired within the grace -> ``GRACE_READ_ONLY``: runs read-only
* licensing API unreachable within the offline grace -> ``OFFLINE_GRACE``
* otherwise ``VALID``

The verdict says until when each grace lasts (``grace_until``: expiry + 7 days;
``offline_grace_until``: last successful check + 24 hours, when the API is unreachable).
``license_period`` is the expiry rule alone (valid / grace / expired), which the licensing API
reports with every license.

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


class LicensePeriod(enum.StrEnum):
    VALID = "valid"
    GRACE = "grace"  # expired, within the expiry grace: the server runs read-only
    EXPIRED = "expired"


def license_period(expires_at: datetime, now: datetime, expiry_grace: timedelta = EXPIRY_GRACE) -> LicensePeriod:
    if now <= expires_at:
        return LicensePeriod.VALID
    return LicensePeriod.GRACE if now <= expires_at + expiry_grace else LicensePeriod.EXPIRED


@dataclass(frozen=True)
class LicenseVerdict:
    state: LicenseState
    reason: str
    claims: dict[str, Any] = field(default_factory=dict)
    grace_until: datetime | None = None
    offline_grace_until: datetime | None = None

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
            "grace_until": _timestamp(self.grace_until),
            "offline_grace_until": _timestamp(self.offline_grace_until),
        }


def _timestamp(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


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
    offline_until = None if api_reachable or last_successful_check is None else last_successful_check + offline_grace

    def verdict(state: LicenseState, reason: str) -> LicenseVerdict:
        return LicenseVerdict(state, reason, claims, expires_at + expiry_grace, offline_until)

    if now + CLOCK_SKEW < not_before:
        return verdict(LicenseState.INVALID, f"license is not valid before {not_before:%Y-%m-%d %H:%M}")
    if claims["status"] == "revoked":
        return verdict(LicenseState.INVALID, "license has been revoked")
    period = license_period(expires_at, now, expiry_grace)
    if period is LicensePeriod.EXPIRED:
        return verdict(LicenseState.INVALID, f"license expired on {expires_at:%Y-%m-%d}, past the {expiry_grace.days}-day grace")
    # A last check "in the future" (a clock set back) proves nothing about the last 24 hours.
    if not api_reachable and (offline_until is None or not last_successful_check - CLOCK_SKEW <= now <= offline_until):
        return verdict(
            LicenseState.INVALID,
            f"licensing API unreachable and no successful check within {offline_grace.total_seconds() / 3600:g} hours",
        )
    if claims["status"] == "suspended":
        return verdict(LicenseState.SUSPENDED, "tenant is suspended: features are off")
    if period is LicensePeriod.GRACE:
        return verdict(LicenseState.GRACE_READ_ONLY, f"license expired on {expires_at:%Y-%m-%d}: read-only grace period")
    if not api_reachable:
        return verdict(LicenseState.OFFLINE_GRACE, "licensing API unreachable: within the offline grace period")
    return verdict(LicenseState.VALID, "license is valid")
