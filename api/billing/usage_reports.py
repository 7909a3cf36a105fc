"""Usage reports from tenant servers: signed reports, recorded once.

A report is the JSON body ``{"report_id", "ingested_bytes", "at"}``, signed with the tenant
server's credential (api.server_credential.store):

    Cameleer-Server-Key: <key_id>      (or Cameleer-Usage-Key, its former name)
    Cameleer-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

The timestamp must be within the tolerance, so a captured report cannot be replayed later,
and the report id makes a retry a no-op.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field, ValidationError

from api.db.session import ScopedSession
from api.server_credential import store as server_credential
from api.server_credential.store import TOLERANCE_SECONDS
from api.tenant_secrets import TenantSecrets

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


def verify(session: ScopedSession, vault: TenantSecrets, key_id: str | None, signature: str | None,
           body: bytes, now: datetime | None = None,
           secrets_cache: server_credential.SecretCache | None = None) -> tuple[uuid.UUID, UsageReport]:
    """The tenant the report is from and the report; InvalidReport for anything else.

    Runs in a system-scoped session: the key id is what names the tenant."""
    now = now or datetime.now(UTC)
    try:
        tenant_id = server_credential.authenticate(session, vault, key_id, signature, body, now, secrets_cache)
    except server_credential.CredentialRefused as exc:
        raise InvalidReport(str(exc)) from None
    try:
        report = UsageReport.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidReport(f"not a usage report: {exc.errors()[0]['msg']}", status=422) from None
    at = report.at if report.at.tzinfo else report.at.replace(tzinfo=UTC)
    if at > now + timedelta(seconds=TOLERANCE_SECONDS) or at < now - OLDEST_REPORT:
        raise InvalidReport("`at` must lie within the last 35 days", status=422)
    return tenant_id, report.model_copy(update={"at": at})
