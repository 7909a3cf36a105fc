"""Issue license JWTs from the tier catalog; one current license per tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from api.auth.keyring import KeyRing
from api.db.models import KeyPurpose, License, LicenseStatus, Tenant, UsageCredential
from api.tiers import tier_named

AUDIENCE = "cameleer-server"
TOKEN_TYPE = "cameleer-license+jwt"


def license_claims(
    tenant: Tenant, tier_name: str, status: LicenseStatus, *, license_id: uuid.UUID, issuer: str, now: datetime, ttl: timedelta
) -> dict:
    tier = tier_named(tier_name)
    return {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": str(tenant.id),
        "jti": str(license_id),
        "tenant_id": str(tenant.id),
        "tenant_slug": tenant.slug,
        "tier": tier.name,
        "features": tier.features.as_claims(),
        "limits": tier.limits.as_claims(),
        "status": status.value,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }


def current_license(session: Session, tenant_id: uuid.UUID) -> License | None:
    query = (
        select(License)
        .where(License.tenant_id == tenant_id, License.superseded_at.is_(None))
        .order_by(License.issued_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


# A tenant server's license fetch in one statement (api.licensing.server_route): the tenant a
# server key id belongs to (``owner``), its ``slug`` and its current license (``license_id`` and
# the columns a license answer shows, all NULL when it has none); no row when no tenant has that
# key id (unknown or rotated). A system-scope read: the key id is what names the tenant, and the
# statement reads that tenant's license only.
LICENSE_BY_SERVER_KEY = (
    select(UsageCredential.tenant_id.label("owner"), Tenant.slug, License.id.label("license_id"),
           License.tenant_id, License.tier, License.status, License.kid, License.token, License.issued_at,
           License.expires_at)
    .join(Tenant, Tenant.id == UsageCredential.tenant_id)
    .outerjoin(License, and_(License.tenant_id == UsageCredential.tenant_id, License.superseded_at.is_(None)))
    .where(UsageCredential.key_id == bindparam("key_id"))
    .order_by(License.issued_at.desc())
    .limit(1)
)


def license_for_operation(session: Session, operation_id: uuid.UUID) -> License | None:
    return session.scalars(select(License).where(License.operation_id == operation_id)).first()


def issue_license(
    session: Session,
    keys: KeyRing,
    tenant: Tenant,
    *,
    tier_name: str,
    status: LicenseStatus,
    issuer: str,
    ttl: timedelta,
    operation_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> License:
    """Sign a new license and supersede the tenant's previous one."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    previous = current_license(session, tenant.id)
    if previous is not None:
        previous.superseded_at = now
    license_id = uuid.uuid4()
    claims = license_claims(tenant, tier_name, status, license_id=license_id, issuer=issuer, now=now, ttl=ttl)
    signed = keys.sign(KeyPurpose.LICENSE, claims, typ=TOKEN_TYPE)
    row = License(
        id=license_id,
        tenant_id=tenant.id,
        operation_id=operation_id,
        kid=signed.kid,
        tier=tier_name,
        status=status.value,
        token=signed.token,
        issued_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    session.flush()
    return row
