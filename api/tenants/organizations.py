"""Another organisation for a signed-in user: the caller becomes its owner and the same
signup operation provisions it. No email verification (the account's address was verified
when it signed up); the signup limits per client address and per user apply.

Idempotent by the ``Idempotency-Key`` header, per user: the same key and body returns the
organisation the first request created; with another body it is refused (422).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from api.audit.chain import AuditMeta
from api.auth.tokens import Principal
from api.db.models import SignupLimitKind, User
from api.db.session import ScopedSession
from api.problems import Problem, unauthorized
from api.services import Services
from api.tenants.creation import Created, NewOrganization, create_organization, replayed, slug_taken
from api.tenants.schemas import OrganizationRequest
from api.tenants.signup_limits import SignupLimits
from api.tiers import checked_slug, tier_named


def create_for_user(
    db: ScopedSession, services: Services, principal: Principal, body: OrganizationRequest, idempotency_key: str, *,
    address: str, meta: AuditMeta,
) -> Created:
    key = f"organization:{principal.user_id}:{idempotency_key}"
    request_fingerprint = services.fingerprints.of(body.model_dump(mode="json"))
    with db.begin():
        earlier = replayed(db, key, request_fingerprint)
    if earlier is not None:
        return earlier
    checked_slug(body.slug)
    tier_named(body.tier)
    limits = SignupLimits(services.settings, meta, datetime.now(UTC))
    try:
        with db.begin():
            refusal = (limits.admit(db, {SignupLimitKind.ADDRESS: address, SignupLimitKind.USER: str(principal.user_id)})
                       or slug_taken(db, body.slug))
            if refusal is None:
                return _create(db, services, principal, body, key, request_fingerprint, meta)
    except IntegrityError:  # a concurrent request: the same key (replay it) or the same slug
        with db.begin():
            earlier = replayed(db, key, request_fingerprint)
        if earlier is not None:
            return earlier
        raise Problem(409, "duplicate-slug", f"The slug {body.slug!r} was taken meanwhile; choose another.") from None
    raise refusal


def _create(db: ScopedSession, services: Services, principal: Principal, body: OrganizationRequest, key: str,
            request_fingerprint: str, meta: AuditMeta) -> Created:
    owner = db.get(User, principal.user_id)
    if owner is None or owner.scrubbed_at is not None:
        raise unauthorized("The account of this access token no longer exists.")
    wanted = NewOrganization(body.organization_name, body.slug, body.tier)
    return create_organization(db, services, owner, wanted, key=key, request_fingerprint=request_fingerprint,
                               meta=meta, audit_details={"created_by_member": True})
