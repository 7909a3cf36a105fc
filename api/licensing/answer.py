"""What a license fetch answers, whoever asks: the license with its grace periods, its ETag
and its cache rule. The FastAPI route (members) and the tenant servers' route both use it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from pydantic import BaseModel, Field

from api.licensing.verify import LicensePeriod, license_period
from api.settings import Settings

CACHE_CONTROL = "private, max-age=300, must-revalidate"


class LicenseOut(BaseModel):
    tenant_id: str
    tier: str
    status: str
    kid: str
    issued_at: datetime
    expires_at: datetime
    grace_until: datetime = Field(description="Until then an expired license still runs the server, read-only")
    state: LicensePeriod = Field(description="valid until expires_at, grace until grace_until, expired after")
    checked_at: datetime = Field(description="The time of this answer: the server's last successful check")
    offline_grace_until: datetime = Field(
        description="While the licensing API is unreachable, the server keeps running until then")
    token: str


@dataclass(frozen=True)
class LicenseAnswer:
    """``row`` has License's columns (an ORM License or a row of a statement selecting them)."""

    row: Any
    now: datetime
    settings: Settings

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.settings.license_expiry_grace_days)

    @cached_property
    def state(self) -> LicensePeriod:
        return license_period(self.row.expires_at, self.now, self.grace)

    @cached_property
    def etag(self) -> str:
        """Changes with the token and with the period (valid → grace → expired), not with the
        time of the answer: a server that polls gets 304 until something it acts on changes."""
        fingerprint = f"{self.row.token}:{self.state.value}".encode()
        return '"' + hashlib.sha256(fingerprint).hexdigest()[:32] + '"'

    @property
    def headers(self) -> dict[str, str]:
        return {"ETag": self.etag, "Cache-Control": CACHE_CONTROL}

    def matches(self, if_none_match: str | None) -> bool:
        """Whether a conditional request's ``If-None-Match`` names this answer."""
        candidates = [tag.strip() for tag in (if_none_match or "").split(",")]
        return self.etag in candidates or "*" in candidates

    def body(self) -> LicenseOut:
        row = self.row
        return LicenseOut(
            tenant_id=str(row.tenant_id), tier=row.tier, status=row.status, kid=row.kid,
            issued_at=row.issued_at, expires_at=row.expires_at, grace_until=row.expires_at + self.grace,
            state=self.state, checked_at=self.now,
            offline_grace_until=self.now + timedelta(hours=self.settings.license_offline_grace_hours),
            token=row.token,
        )
