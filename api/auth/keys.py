"""Ed25519 signing keys: generation, encryption at rest, rotation and the JWKS.

Each key has a purpose (access tokens or licenses) and a status: ``active`` signs,
``retiring`` only verifies, ``retired`` neither. Private keys are stored encrypted
with AES-GCM under a key derived from ``CAMELEER_SECRET_KEY`` and never leave this module.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from api.db.models import KeyPurpose, KeyStatus, SigningKey


class KeyCipher:
    """AES-GCM encryption of secrets at rest; the key id is bound as associated data, and
    each purpose gets its own key derived from the platform secret."""

    def __init__(self, secret: str, purpose: bytes = b"cameleer signing keys") -> None:
        self._aead = AESGCM(
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())
        )

    def encrypt(self, plaintext: bytes, kid: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, kid.encode())

    def decrypt(self, blob: bytes, kid: str) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], kid.encode())


@dataclass(frozen=True)
class SigningMaterial:
    kid: str
    private_key: Ed25519PrivateKey

    def __repr__(self) -> str:  # never print key material
        return f"SigningMaterial(kid={self.kid!r})"


def public_key_from_pem(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def jwk(kid: str, public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


class KeyStore:
    def __init__(self, secret: str) -> None:
        self._cipher = KeyCipher(secret)

    def create(self, session: Session, purpose: KeyPurpose) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        kid = f"{purpose.value}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        row = SigningKey(
            kid=kid,
            purpose=purpose.value,
            algorithm="EdDSA",
            public_key_pem=public_pem.decode(),
            private_key_encrypted=self._cipher.encrypt(pem, kid),
            status=KeyStatus.ACTIVE.value,
        )
        session.add(row)
        session.flush()
        return row

    def signing_key(self, session: Session, purpose: KeyPurpose) -> SigningMaterial:
        """The active key of ``purpose``; the first call creates it."""
        row = self._active_row(session, purpose)
        if row is None:
            # Serialize bootstrap so two processes do not both create an active key.
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"signing-key:{purpose}"})
            row = self._active_row(session, purpose) or self.create(session, purpose)
        pem = self._cipher.decrypt(row.private_key_encrypted, row.kid)
        private_key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private_key, Ed25519PrivateKey)
        return SigningMaterial(kid=row.kid, private_key=private_key)

    def verification_keys(self, session: Session, purpose: KeyPurpose | None = None) -> dict[str, Ed25519PublicKey]:
        """Public keys that still verify: active and retiring ones."""
        query = select(SigningKey).where(SigningKey.status.in_([KeyStatus.ACTIVE, KeyStatus.RETIRING]))
        if purpose is not None:
            query = query.where(SigningKey.purpose == purpose.value)
        return {row.kid: public_key_from_pem(row.public_key_pem) for row in session.scalars(query)}

    def jwks(self, session: Session) -> dict[str, list[dict[str, str]]]:
        keys = self.verification_keys(session)
        return {"keys": [jwk(kid, key) for kid, key in sorted(keys.items())]}

    def rotate(self, session: Session, purpose: KeyPurpose) -> SigningKey:
        """A new active key signs from now on; the previous one keeps verifying until retired."""
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"signing-key:{purpose}"})
        now = datetime.now(UTC)
        previous = self._active_row(session, purpose)
        if previous is not None:
            previous.status = KeyStatus.RETIRING.value
            previous.retiring_at = now
        return self.create(session, purpose)

    def retire(self, session: Session, kid: str) -> SigningKey | None:
        row = session.get(SigningKey, kid)
        if row is None or row.status != KeyStatus.RETIRING:
            return None
        row.status = KeyStatus.RETIRED.value
        row.retired_at = datetime.now(UTC)
        return row

    @staticmethod
    def _active_row(session: Session, purpose: KeyPurpose) -> SigningKey | None:
        query = (
            select(SigningKey)
            .where(SigningKey.purpose == purpose.value, SigningKey.status == KeyStatus.ACTIVE)
            .order_by(SigningKey.created_at.desc())
            .limit(1)
        )
        return session.scalars(query).first()
