"""Usage reports from tenant servers: a per-tenant credential, signed reports, recorded once.

A tenant's servers hold one credential (`key_id` + secret, issued or rotated by an owner,
shown once; the secret is stored encrypted). A report is the JSON body
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

from api.auth.keys import KeyCipher
from api.billing.signatures import digest, parse_signature_header
from api.db.models import UsageCredential
from api.db.session import ScopedSession

CIPHER_PURPOSE = b"cameleer usage credentials"
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


def issue_credential(session: ScopedSession, platform_secret: str, tenant_id: uuid.UUID) -> IssuedCredential:
    """Create the tenant's credential, or replace it (the old one stops working at once)."""
    key_id, secret = f"cuk_{secrets.token_hex(12)}", f"cus_secret_{secrets.token_urlsafe(32)}"
    encrypted = KeyCipher(platform_secret, CIPHER_PURPOSE).encrypt(secret.encode(), key_id)
    existing = session.get(UsageCredential, tenant_id, with_for_update=True)
    if existing is None:
        session.add(UsageCredential(tenant_id=tenant_id, key_id=key_id, secret_encrypted=encrypted))
    else:
        existing.key_id, existing.secret_encrypted = key_id, encrypted
        existing.created_at = datetime.now(UTC)
    session.flush()
    return IssuedCredential(key_id, secret)


def revoke_credential(session: ScopedSession, tenant_id: uuid.UUID) -> None:
    credential = session.get(UsageCredential, tenant_id)
    if credential is not None:
        session.delete(credential)


def verify(session: ScopedSession, platform_secret: str, key_id: str | None, signature: str | None,
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
    if credential is None:
        raise InvalidReport("unknown or rotated usage key")
    secret = KeyCipher(platform_secret, CIPHER_PURPOSE).decrypt(credential.secret_encrypted, credential.key_id).decode()
    expected = digest(secret, timestamp, body)
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
