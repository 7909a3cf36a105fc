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
                 message: bytes, now: datetime) -> uuid.UUID:
    """The tenant whose credential signed ``message``; CredentialRefused for anything else.

    Runs in a system-scoped session: the key id is what names the tenant."""
    if not key_id or not signature:
        raise CredentialRefused(f"the request needs the {KEY_HEADER} and {SIGNATURE_HEADER} headers")
    try:
        timestamp, digests = parse_signature_header(signature)
    except ValueError:
        raise CredentialRefused(f"the {SIGNATURE_HEADER} header is not t=<time>,v1=<hmac>") from None
    credential = session.scalar(select(UsageCredential).where(UsageCredential.key_id == key_id))
    stored = None if credential is None else vault.read(session.get(Tenant, credential.tenant_id).slug, USAGE_CREDENTIAL)
    if stored is None or not hmac.compare_digest(stored["key_id"], key_id):
        raise CredentialRefused("unknown or rotated server key")
    expected = digest(stored["secret"], timestamp, message)
    if not any(hmac.compare_digest(expected, candidate) for candidate in digests):
        raise CredentialRefused("the signature does not match the request")
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise CredentialRefused(f"the signature's timestamp is more than {TOLERANCE_SECONDS} s from now")
    return credential.tenant_id


def get_message(path: str) -> bytes:
    """What a GET request signs: its method and path."""
    return f"GET {path}".encode()
