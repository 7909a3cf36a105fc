"""Usage reports from tenant servers: a per-tenant credential, signed reports, recorded once.

A tenant's servers hold one credential (`key_id` + secret, issued or rotated by an owner,
shown once). The secret is kept only in the tenant's KV path (`tenants/<slug>/usage-credential`,
which its servers may read); the platform database maps the key id to the tenant. A report
is the JSON body
``{"report_id", "ingested_bytes", "at"}`` sent with

    Cameleer-Usage-Key: <key_id>
    Cameleer-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

The same scheme as Stripe's webhooks: the timestamp must be within the tolerance, so a
captured report cannot be replayed later, and the report id makes a retry a no-op. The
credential is not a user token: it can report usage for its tenant and do nothing else.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from api.billing.signatures import digest, parse_signature_header
from api.db.models import Tenant, UsageCredential
from api.db.session import ScopedSession
from api.tenant_secrets import USAGE_CREDENTIAL, TenantSecrets

TOLERANCE_SECONDS = 300
OLDEST_REPORT = timedelta(days=35)  # Stripe accepts meter events up to 35 days old


class InvalidReport(ValueError):
    """Unknown key, bad or stale signature, or a body that is not a report: answered 401/422."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class UsageReport(BaseModel):
    report_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    ingested_bytes: int = Field(ge=0, le=10**15)
    at: datetime


@dataclass(frozen=True)
class IssuedCredential:
    key_id: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"IssuedCredential(key_id={self.key_id!r})"


def issue_credential(session: ScopedSession, vault: TenantSecrets, tenant: Tenant) -> IssuedCredential:
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


def revoke_credential(session: ScopedSession, tenant_id: uuid.UUID) -> None:
    credential = session.get(UsageCredential, tenant_id)
    if credential is not None:
        session.delete(credential)


def verify(session: ScopedSession, vault: TenantSecrets, key_id: str | None, signature: str | None,
           body: bytes, now: datetime | None = None) -> tuple[uuid.UUID, UsageReport]:
    """The tenant the report is from and the report; InvalidReport for anything else.

    Runs in a system-scoped session: the key id is what names the tenant."""
    if not key_id or not signature:
        raise InvalidReport("the request needs the Cameleer-Usage-Key and Cameleer-Signature headers")
    now = now or datetime.now(UTC)
    try:
        timestamp, digests = parse_signature_header(signature)
    except ValueError:
        raise InvalidReport("the Cameleer-Signature header is not t=<time>,v1=<hmac>") from None
    credential = session.scalar(select(UsageCredential).where(UsageCredential.key_id == key_id))
    stored = None if credential is None else vault.read(session.get(Tenant, credential.tenant_id).slug, USAGE_CREDENTIAL)
    if stored is None or not hmac.compare_digest(stored["key_id"], key_id):
        raise InvalidReport("unknown or rotated usage key")
    expected = digest(stored["secret"], timestamp, body)
    if not any(hmac.compare_digest(expected, digest) for digest in digests):
        raise InvalidReport("the signature does not match the report")
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise InvalidReport(f"the signature's timestamp is more than {TOLERANCE_SECONDS} s from now")
    try:
        report = UsageReport.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidReport(f"not a usage report: {exc.errors()[0]['msg']}", status=422) from None
    at = report.at if report.at.tzinfo else report.at.replace(tzinfo=UTC)
    if at > now + timedelta(seconds=TOLERANCE_SECONDS) or at < now - OLDEST_REPORT:
        raise InvalidReport("`at` must lie within the last 35 days", status=422)
    return credential.tenant_id, report.model_copy(update={"at": at})
