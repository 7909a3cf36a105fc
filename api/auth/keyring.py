"""Every key that signs or verifies the platform's tokens and licenses, per purpose.

New tokens are signed by the purpose's transit key (``api.auth.signing``). The public keys
of the signing keys from before transit (table ``signing_keys``, migration 0006) verify
what they signed until they are retired: by an operator, or by the maintenance job once
the purpose's overlap has passed since the move. The JWKS of a purpose lists both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.jws import jwk
from api.auth.signing import CACHE_SECONDS, KeyPolicy, SignedToken, TransitSigner
from api.db.models import KeyPurpose, KeyStatus, SigningKey


@dataclass(frozen=True)
class PublishedKey:
    kid: str
    purpose: KeyPurpose
    status: str  # active (signs), retiring (verifies only)


@dataclass(frozen=True)
class Maintained:
    purpose: KeyPurpose
    rotated_to: str | None
    retired: list[str]


def _public_key(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


class KeyRing:
    def __init__(self, signer: TransitSigner, policies: Mapping[KeyPurpose, KeyPolicy],
                 *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.signer = signer
        self._policies = dict(policies)
        # Legacy public keys per purpose, read for verification at most every cache_seconds
        # (every request verifies a token) and whenever a token names a kid not among them.
        # A retirement here clears them; one by another process is seen within cache_seconds,
        # as the transit keys' retirements are (api.auth.signing).
        self._cache_seconds = cache_seconds
        self._legacy_keys: dict[KeyPurpose, tuple[float, dict[str, Ed25519PublicKey]]] = {}
        self._lock = threading.Lock()

    def sign(self, purpose: KeyPurpose, claims: Mapping[str, Any], *, typ: str = "JWT") -> SignedToken:
        return self.signer.sign(purpose, claims, typ=typ)

    def verification_keys(
        self, session: Session, purpose: KeyPurpose, *, kid: str | None = None
    ) -> dict[str, Ed25519PublicKey]:
        legacy = self._legacy_verification_keys(session, purpose)
        if kid is not None and kid in legacy:
            return legacy
        transit = self.signer.verification_keys(purpose, kid=kid)
        if kid is not None and kid not in transit:  # not among the cached keys: the table's present rows
            legacy = self._legacy_verification_keys(session, purpose, fresh=True)
        return {**legacy, **transit}

    def _legacy_verification_keys(self, session: Session, purpose: KeyPurpose, *,
                                  fresh: bool = False) -> dict[str, Ed25519PublicKey]:
        with self._lock:
            cached = self._legacy_keys.get(purpose)
        if not fresh and cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        keys = {row.kid: _public_key(row.public_key_pem) for row in self._legacy(session, purpose)}
        with self._lock:
            self._legacy_keys[purpose] = (time.monotonic(), keys)
        return keys

    def _forget_legacy_keys(self) -> None:
        with self._lock:
            self._legacy_keys.clear()

    def jwks(self, session: Session, purpose: KeyPurpose) -> dict[str, list[dict[str, str]]]:
        legacy = [{**jwk(row.kid, _public_key(row.public_key_pem)), "alg": row.algorithm}
                  for row in self._legacy(session, purpose)]
        return {"keys": self.signer.jwks(purpose)["keys"] + legacy}

    def published(self, session: Session) -> list[PublishedKey]:
        keys = []
        for purpose in KeyPurpose:
            keys += [PublishedKey(v.kid, purpose, v.status) for v in self.signer.versions(purpose)]
            keys += [PublishedKey(row.kid, purpose, row.status) for row in self._legacy(session, purpose)]
        return keys

    def rotate(self, purpose: KeyPurpose) -> PublishedKey:
        version = self.signer.rotate(purpose)
        return PublishedKey(version.kid, purpose, version.status)

    def retire(self, session: Session, kid: str) -> PublishedKey | None:
        """Stop verifying ``kid`` (and, for a transit key, its older versions)."""
        row = session.get(SigningKey, kid, with_for_update=True)
        if row is not None and row.status == KeyStatus.RETIRING:
            row.status, row.retired_at = KeyStatus.RETIRED.value, datetime.now(UTC)
            self._forget_legacy_keys()
            return PublishedKey(kid, KeyPurpose(row.purpose), row.status)
        retired = self.signer.retire(kid)
        return None if retired is None else PublishedKey(kid, retired.purpose, KeyStatus.RETIRED.value)

    def maintain(self, session: Session, purpose: KeyPurpose, *, now: datetime | None = None) -> Maintained:
        """Rotate a key older than its rotation period; retire what the overlap no longer needs."""
        now = now or datetime.now(UTC)
        done = self.signer.maintain(purpose, now=now)
        overlap = self._policies[purpose].overlap
        retired = list(done.retired)
        for row in self._legacy(session, purpose):
            if row.retiring_at is not None and now - row.retiring_at >= overlap:
                row.status, row.retired_at = KeyStatus.RETIRED.value, now
                retired.append(row.kid)
        if retired:
            self._forget_legacy_keys()
        return Maintained(purpose, done.rotated.kid if done.rotated else None, retired)

    @staticmethod
    def _legacy(session: Session, purpose: KeyPurpose) -> list[SigningKey]:
        query = select(SigningKey).where(SigningKey.purpose == purpose.value, SigningKey.status == KeyStatus.RETIRING)
        return list(session.scalars(query.order_by(SigningKey.created_at)))
