"""Signup: tenant (PENDING), owner, membership and the signup operation, in one transaction.

Idempotent by the ``Idempotency-Key`` header: the same key with the same body returns
the original tenant and operation; with another body it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.audit.chain import AuditMeta, append
from api.auth.passwords import weak_password_reasons
from api.auth.roles import TenantRole
from api.auth.users import create_user, find_user
from api.db.models import Membership, Operation, OperationKind, Tenant, TenantStatus
from api.db.session import ScopedSession
from api.operations.service import find_by_key, replay_or_conflict, start_operation
from api.problems import Problem
from api.services import Services
from api.tenants.schemas import SignupRequest
from api.tiers import checked_slug, placement_for, tier_named


@dataclass(frozen=True)
class SignupResult:
    tenant: Tenant
    operation: Operation
    created: bool


def _validate(body: SignupRequest) -> None:
    checked_slug(body.slug)
    tier_named(body.tier)
    reasons = weak_password_reasons(body.owner_password, email=body.owner_email, slug=body.slug)
    if reasons:
        raise Problem(422, "weak-password", "The password " + "; ".join(reasons) + ".", reasons=reasons)


def _replay(db: ScopedSession, key: str, request_fingerprint: str) -> SignupResult | None:
    existing = find_by_key(db, key)
    if existing is None:
        return None
    operation = replay_or_conflict(existing, request_fingerprint)
    return SignupResult(db.get(Tenant, operation.tenant_id), operation, created=False)


def _create(db: ScopedSession, services: Services, body: SignupRequest, key: str, request_fingerprint: str, meta: AuditMeta) -> SignupResult:
    if db.scalar(select(Tenant.id).where(Tenant.slug == body.slug)) is not None:
        raise Problem(409, "duplicate-slug", f"The slug {body.slug!r} is already taken; choose another.")
    if find_user(db, body.owner_email) is not None:
        raise Problem(409, "email-registered", "This email already has an account; sign in to create another organisation.")
    tier = tier_named(body.tier)
    tenant = Tenant(
        slug=body.slug, name=body.organization_name, tier=tier.name,
        status=TenantStatus.PENDING.value, placement=placement_for(tier, body.slug),
    )
    db.add(tenant)
    owner = create_user(db, body.owner_email, body.owner_password)
    db.flush()
    db.add(Membership(user_id=owner.id, tenant_id=tenant.id, role=TenantRole.OWNER.value))
    actor = f"user:{owner.id}"
    operation = start_operation(
        db, kind=OperationKind.SIGNUP, tenant_id=tenant.id, key=key, request_fingerprint=request_fingerprint,
        requested_by=actor, params={"tier": tier.name}, queue=services.settings.job_queue,
    )
    append(
        db, AuditMeta(actor, meta.source_ip, meta.request_id), "tenant.signup", f"tenant:{tenant.id}",
        tenant_id=tenant.id, details={"slug": tenant.slug, "tier": tier.name, "operation_id": str(operation.id)},
    )
    return SignupResult(tenant, operation, created=True)


def signup(db: ScopedSession, services: Services, body: SignupRequest, idempotency_key: str, meta: AuditMeta) -> SignupResult:
    key = f"signup:{idempotency_key}"
    request_fingerprint = services.fingerprints.of(body.model_dump(mode="json"))
    with db.begin():
        replayed = _replay(db, key, request_fingerprint)
        if replayed is not None:
            return replayed
        _validate(body)
    try:
        with db.begin():
            return _create(db, services, body, key, request_fingerprint, meta)
    except IntegrityError:
        # A concurrent request won the race: same key (replay it) or same slug/email (conflict).
        with db.begin():
            replayed = _replay(db, key, request_fingerprint)
        if replayed is not None:
            return replayed
        raise Problem(409, "duplicate-slug", f"The slug {body.slug!r} or the email is already taken.") from None
