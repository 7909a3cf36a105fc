"""A new organisation: the tenant (PENDING), its owner's membership and the signup
operation that provisions it, audited, in the caller's transaction.

Shared by a verified signup (a new owner) and a signed-in user's new organisation (the
caller as owner). A taken slug is a 409: slugs are the organisations' public names (their
namespaces and hosts), so saying one is taken reveals nothing private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from api.audit.chain import AuditMeta, append
from api.auth.roles import TenantRole
from api.db.models import Membership, Operation, OperationKind, Tenant, TenantStatus, User
from api.db.session import ScopedSession
from api.operations.service import find_by_key, replay_or_conflict, start_operation
from api.problems import Problem
from api.services import Services
from api.tiers import placement_kind, tier_named


@dataclass(frozen=True)
class NewOrganization:
    name: str
    slug: str
    tier: str


@dataclass(frozen=True)
class Created:
    tenant: Tenant
    operation: Operation


def slug_taken(db: ScopedSession, slug: str) -> Problem | None:
    """The 409 to answer when an organisation already has this slug."""
    if db.scalar(select(Tenant.id).where(Tenant.slug == slug)) is None:
        return None
    return Problem(409, "duplicate-slug", f"The slug {slug!r} is already taken; choose another.")


def replayed(db: ScopedSession, key: str, request_fingerprint: str) -> Created | None:
    """The organisation an earlier request with this operation key created, if any (422 when
    that request had another body)."""
    existing = find_by_key(db, key)
    if existing is None:
        return None
    operation = replay_or_conflict(existing, request_fingerprint)
    return Created(db.get(Tenant, operation.tenant_id), operation)


def create_organization(
    db: ScopedSession, services: Services, owner: User, wanted: NewOrganization, *,
    key: str, request_fingerprint: str, meta: AuditMeta, audit_details: dict[str, Any],
) -> Created:
    taken = slug_taken(db, wanted.slug)
    if taken is not None:
        raise taken
    tier = tier_named(wanted.tier)
    tenant = Tenant(slug=wanted.slug, name=wanted.name, tier=tier.name, status=TenantStatus.PENDING.value,
                    placement=placement_kind(tier))
    db.add(tenant)
    db.flush()
    db.add(Membership(user_id=owner.id, tenant_id=tenant.id, role=TenantRole.OWNER.value))
    actor = f"user:{owner.id}"
    operation = start_operation(
        db, kind=OperationKind.SIGNUP, tenant_id=tenant.id, key=key, request_fingerprint=request_fingerprint,
        requested_by=actor, params={"tier": tier.name}, queue=services.settings.job_queue,
    )
    append(
        db, AuditMeta(actor, meta.source_ip, meta.request_id), "tenant.signup", f"tenant:{tenant.id}",
        tenant_id=tenant.id,
        details={"slug": tenant.slug, "tier": tier.name, "operation_id": str(operation.id), **audit_details},
    )
    return Created(tenant, operation)
