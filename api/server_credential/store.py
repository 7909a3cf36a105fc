"""The tenant server's credential: one per tenant, a key id and a secret.

The secret is kept only in the tenant's KV path (``tenants/<slug>/usage-credential``, the path's
name from when the credential signed usage reports alone), which its servers read with their
Kubernetes login; the database maps the key id to the tenant. The ``tenant_secrets`` step issues
one with the stack when the tenant has none; an owner rotates it (the old one stops at once).

A request is signed, as Stripe signs its webhooks, with

    Cameleer-Server-Key: <key_id>
    Cameleer-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + message)>

where the message is the body of a POST and ``GET <path>`` for a GET (the signature then names
the tenant's own path). The timestamp must be within the tolerance, so a captured request
cannot be replayed later. The credential authenticates exactly two requests: its tenant's
license (``GET /api/license/{tenant_id}``) and usage reports (``POST /v1/billing/usage-reports``);
it is not a user token and every other endpoint refuses it.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from api.billing.signatures import digest, parse_signature_header
from api.db.models import Tenant, UsageCredential
from api.db.session import ScopedSession
from api.tenant_secrets import USAGE_CREDENTIAL, TenantSecrets

KEY_HEADER = "Cameleer-Server-Key"
LEGACY_KEY_HEADER = "Cameleer-Usage-Key"  # still accepted on usage reports
SIGNATURE_HEADER = "Cameleer-Signature"
TOLERANCE_SECONDS = 300
SECRET_CACHE_SECONDS = 60.0
SECRET_CACHE_ENTRIES = 100_000
UNKNOWN_KEY = "unknown or rotated server key"


class CredentialRefused(ValueError):
    """Missing headers, unknown or rotated key, bad or stale signature (answered 401)."""


@dataclass(frozen=True)
class IssuedCredential:
    key_id: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"IssuedCredential(key_id={self.key_id!r})"


def issue(session: ScopedSession, vault: TenantSecrets, tenant: Tenant) -> IssuedCredential:
    """Create the tenant's credential, or replace it (the old one stops working at once).

    The secret goes to the tenant's KV path before the key id is committed here: a failure
    between the two leaves the old key id naming a secret it no longer matches (refused), never
    a key id without a secret."""
    key_id, secret = f"cuk_{secrets.token_hex(12)}", f"cus_secret_{secrets.token_urlsafe(32)}"
    existing = session.get(UsageCredential, tenant.id, with_for_update=True)
    vault.write(tenant.slug, USAGE_CREDENTIAL, {"key_id": key_id, "secret": secret})
    if existing is None:
        session.add(UsageCredential(tenant_id=tenant.id, key_id=key_id))
    else:
        existing.key_id, existing.created_at = key_id, datetime.now(UTC)
    session.flush()
    return IssuedCredential(key_id, secret)


def ensure(session: ScopedSession, vault: TenantSecrets, tenant: Tenant) -> IssuedCredential | None:
    """Issue the tenant's credential when its servers have none they could use; None when they have."""
    existing = session.get(UsageCredential, tenant.id, with_for_update=True)
    stored = vault.read(tenant.slug, USAGE_CREDENTIAL) if existing is not None else None
    if stored is not None and hmac.compare_digest(stored.get("key_id", ""), existing.key_id):
        return None
    return issue(session, vault, tenant)


def revoke(session: ScopedSession, tenant_id: uuid.UUID) -> None:
    credential = session.get(UsageCredential, tenant_id)
    if credential is not None:
        session.delete(credential)


def authenticate(session: ScopedSession, vault: TenantSecrets, key_id: str | None, signature: str | None,
                 message: bytes, now: datetime, secrets_cache: SecretCache | None = None) -> uuid.UUID:
    """The tenant whose credential signed ``message``; CredentialRefused for anything else.

    Runs in a system-scoped session: the key id is what names the tenant."""
    signed = parse(key_id, signature)
    row = session.execute(select(UsageCredential.tenant_id, Tenant.slug)
                          .join(Tenant, Tenant.id == UsageCredential.tenant_id)
                          .where(UsageCredential.key_id == signed.key_id)).first()
    if row is None:
        raise CredentialRefused(UNKNOWN_KEY)
    check(signed, row.slug, message, now, vault, secrets_cache)
    return row.tenant_id


@dataclass(frozen=True)
class SignedRequest:
    key_id: str
    timestamp: int
    digests: list[str]


def parse(key_id: str | None, signature: str | None) -> SignedRequest:
    """The request's key id and signature, before anything is looked up."""
    if not key_id or not signature:
        raise CredentialRefused(f"the request needs the {KEY_HEADER} and {SIGNATURE_HEADER} headers")
    try:
        timestamp, digests = parse_signature_header(signature)
    except ValueError:
        raise CredentialRefused(f"the {SIGNATURE_HEADER} header is not t=<time>,v1=<hmac>") from None
    return SignedRequest(key_id, timestamp, digests)


def check(signed: SignedRequest, slug: str, message: bytes, now: datetime, vault: TenantSecrets,
          secrets_cache: SecretCache | None = None) -> None:
    """Verify the signature of a request whose key id the database maps to the tenant ``slug``
    (the caller looked it up: a rotated key id is no longer there)."""
    verify(signed, secret_of(signed.key_id, slug, vault, secrets_cache), message, now)


def verify(signed: SignedRequest, secret: str | None, message: bytes, now: datetime) -> None:
    """Check the signature with the key id's secret (None: OpenBao has none for it)."""
    if secret is None:
        raise CredentialRefused(UNKNOWN_KEY)
    expected = digest(secret, signed.timestamp, message)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signed.digests):
        raise CredentialRefused("the signature does not match the request")
    if abs(now.timestamp() - signed.timestamp) > TOLERANCE_SECONDS:
        raise CredentialRefused(f"the signature's timestamp is more than {TOLERANCE_SECONDS} s from now")


def secret_of(key_id: str, slug: str, vault: TenantSecrets, secrets_cache: SecretCache | None) -> str | None:
    """The key id's secret, from the cache or else from the tenant's KV path in OpenBao."""
    cached = secrets_cache.get(key_id) if secrets_cache is not None else None
    if cached is not None:
        return cached
    stored = vault.read(slug, USAGE_CREDENTIAL)
    if stored is None or not hmac.compare_digest(stored.get("key_id", ""), key_id):
        return None
    if secrets_cache is not None:
        secrets_cache.put(key_id, stored["secret"])
    return stored["secret"]


class SecretCache:
    """The secrets of key ids read from OpenBao in the last ``ttl`` seconds, so that a tenant
    server's every request does not read its KV path.

    A key id names one secret for its whole life (issuing or rotating makes a new key id), and
    the caller looks the key id up in the database on every request first: a rotated or revoked
    key id is refused at once, cached or not. The time limit bounds only the case where a
    rotation wrote the new secret but failed to commit its key id."""

    def __init__(self, ttl: float = SECRET_CACHE_SECONDS, max_entries: int = SECRET_CACHE_ENTRIES) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None or time.monotonic() - entry[0] >= self._ttl:
                return None
            return entry[1]

    def put(self, key_id: str, secret: str) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                now = time.monotonic()
                self._entries = {k: e for k, e in self._entries.items() if now - e[0] < self._ttl}
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
            self._entries[key_id] = (time.monotonic(), secret)

    def __repr__(self) -> str:  # never print a secret
        return f"SecretCache({len(self._entries)} key ids)"


def get_message(path: str) -> bytes:
    """What a GET request signs: its method and path."""
    return f"GET {path}".encode()
