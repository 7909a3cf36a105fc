"""A tenant's members: invitations (a mailed single-use link), role changes and removals.

Who may do what (platform operators may do all of it):

* owners and admins manage members; developers and viewers do not;
* a role is granted (invited, or changed to) only by someone holding it or a higher one:
  an admin invites and promotes up to admin, only an owner makes owners;
* a member is changed or removed only by someone holding the member's role or a higher
  one: an admin can neither demote nor remove an owner;
* the last owner can be neither demoted nor removed, by anyone (409 ``last-owner``).

Access tokens carry the memberships, so a role change or a removal revokes the member's
outstanding access tokens at once (``api.auth.sessions``); their sessions stay, and the
next refresh issues a token with the memberships as they are now. Checking memberships in
the database on every request instead would cost a join per request and make the token's
claims a second, stale truth.

Owner rows are locked (in one order) before any change is decided, so two owners demoting
or removing each other at the same time cannot leave the tenant without one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from api.audit.chain import AuditMeta, append
from api.auth import links, sessions
from api.auth.dependencies import TenantContext
from api.auth.links import LinkInvalid, LinkPurpose, invalid_link
from api.auth.passwords import require_strong_password
from api.auth.roles import OPERATORS, TenantRole
from api.auth.tokens import Principal
from api.auth.users import create_user, find_user, normalize_email
from api.db.models import Membership, Tenant, TenantStatus, User
from api.db.session import ScopedSession
from api.mail import Message
from api.problems import Problem, forbidden, not_found
from api.services import Services

CLOSED_STATUSES = (TenantStatus.DELETING.value, TenantStatus.DELETED.value)


@dataclass(frozen=True)
class Invitation:
    email: str
    role: TenantRole
    link: links.IssuedLink
    message: Message  # sent once the transaction has committed


@dataclass(frozen=True)
class Joined:
    membership: Membership
    account_created: bool


def _actor_role(ctx: TenantContext) -> TenantRole:
    if ctx.principal.has_platform_role(OPERATORS):
        return TenantRole.OWNER
    return ctx.principal.role_in(ctx.tenant_id) or TenantRole.VIEWER


def _may_grant(ctx: TenantContext, role: TenantRole) -> None:
    held = _actor_role(ctx)
    if not held.satisfies(role):
        raise forbidden(f"Only an owner can grant the {role.value} role; you are {held.value}.")


def _may_manage(ctx: TenantContext, member: Membership) -> None:
    held = _actor_role(ctx)
    if not held.satisfies(TenantRole(member.role)):
        raise forbidden(f"A {held.value} cannot change or remove a member who is {member.role}.")


def _lock_owners(ctx: TenantContext) -> list[uuid.UUID]:
    return list(ctx.db.scalars(
        select(Membership.user_id)
        .where(Membership.tenant_id == ctx.tenant_id, Membership.role == TenantRole.OWNER.value)
        .order_by(Membership.id).with_for_update()))


def _locked_member(ctx: TenantContext, user_id: uuid.UUID) -> Membership:
    member = ctx.db.scalar(
        select(Membership).where(Membership.tenant_id == ctx.tenant_id, Membership.user_id == user_id)
        .with_for_update().execution_options(populate_existing=True))
    if member is None:
        raise not_found("Member")
    return member


def _keep_an_owner(owners: list[uuid.UUID], user_id: uuid.UUID) -> None:
    if not set(owners) - {user_id}:
        raise Problem(409, "last-owner", "The tenant's last owner can be neither demoted nor removed; "
                                         "make another member owner first.")


def member_of(ctx: TenantContext, user_id: uuid.UUID) -> tuple[Membership, User]:
    member = ctx.db.scalar(select(Membership).where(Membership.tenant_id == ctx.tenant_id,
                                                    Membership.user_id == user_id))
    if member is None:
        raise not_found("Member")
    return member, ctx.db.get(User, user_id)


def change_role(ctx: TenantContext, user_id: uuid.UUID, role: TenantRole) -> Membership:
    """Set a member's role (idempotent: the same role changes and audits nothing)."""
    owners = _lock_owners(ctx)
    member = _locked_member(ctx, user_id)
    _may_manage(ctx, member)
    _may_grant(ctx, role)
    previous = TenantRole(member.role)
    if previous == role:
        return member
    if previous == TenantRole.OWNER:
        _keep_an_owner(owners, user_id)
    member.role = role.value
    revoked = sessions.revoke_access_tokens_of(ctx.db, user_id)
    ctx.audit("member.role_change", f"user:{user_id}", previous=previous.value, role=role.value,
              access_tokens_revoked=revoked)
    return member


def remove(ctx: TenantContext, user_id: uuid.UUID) -> None:
    owners = _lock_owners(ctx)
    member = _locked_member(ctx, user_id)
    _may_manage(ctx, member)
    if member.role == TenantRole.OWNER.value:
        _keep_an_owner(owners, user_id)
    ctx.db.delete(member)
    ctx.db.flush()
    revoked = sessions.revoke_access_tokens_of(ctx.db, user_id)
    ctx.audit("member.remove", f"user:{user_id}", role=member.role, access_tokens_revoked=revoked)


def invite(ctx: TenantContext, email: str, role: TenantRole) -> Invitation:
    """A single-use link for ``email`` to join as ``role``; a new invitation of the same
    email to the same tenant ends the earlier one."""
    _may_grant(ctx, role)
    email = normalize_email(email)
    tenant = ctx.db.get(Tenant, ctx.tenant_id)
    if tenant is None or tenant.status in CLOSED_STATUSES:
        raise Problem(409, "tenant-closed", "The tenant is being deleted; nobody can join it.")
    already = ctx.db.scalar(select(Membership.id).join(User, User.id == Membership.user_id)
                            .where(Membership.tenant_id == ctx.tenant_id, User.email == email))
    if already is not None:
        raise Problem(409, "already-member", "This email already belongs to a member of the tenant.")
    ttl = timedelta(seconds=ctx.services.settings.invitation_ttl_seconds)
    issued = links.issue(ctx.db, LinkPurpose.INVITE, f"{ctx.tenant_id}:{email}", ttl=ttl, tenant_id=ctx.tenant_id,
                         payload={"email": email, "role": role.value, "invited_by": ctx.principal.actor})
    ctx.audit("member.invite", f"invitation:{issued.link.id}", email=email, role=role.value,
              expires_at=issued.link.expires_at.isoformat())
    return Invitation(email, role, issued, _invitation_mail(ctx.services, tenant, email, role, issued.token, ttl))


def _invitation_mail(services: Services, tenant: Tenant, email: str, role: TenantRole, token: str,
                     ttl: timedelta) -> Message:
    # The token rides in the fragment, which browsers never send to a server: no access log holds it.
    link = f"{services.settings.public_base_url.rstrip('/')}/console/invitations/accept#token={token}"
    return Message(to=email, subject=f"You are invited to {tenant.name} on Cameleer", body=(
        f"You are invited to join the organisation {tenant.name} on Cameleer as {role.value}.\n\n"
        f"Accept within {ttl.days or 1} day(s) here (the link works once):\n\n{link}\n\n"
        "(API: POST /v1/invitations/accept with this token; signed in if you already have an account,\n"
        "with a password for your new account if not.)\n"))


def accept(db: ScopedSession, token: str, password: str | None, caller: Principal | None, meta: AuditMeta) -> Joined:
    """Join the invitation's tenant: a new account needs a password; an existing one needs
    its owner signed in (a password here would be a login that no throttle counts). A used,
    expired or unknown link is the problem ``invalid-link``."""
    try:
        link = links.redeem(db, LinkPurpose.INVITE, token)
    except LinkInvalid as exc:
        raise invalid_link(exc) from None
    email, role = link.payload["email"], TenantRole(link.payload["role"])
    tenant = db.get(Tenant, link.tenant_id) if link.tenant_id else None
    if tenant is None or tenant.status in CLOSED_STATUSES:
        raise Problem(409, "tenant-closed", "The tenant is being deleted; nobody can join it.")
    user = find_user(db, email)
    created = user is None
    if user is None:
        if not password:
            raise Problem(422, "password-required", "No account has this email yet: give a password to create it.")
        require_strong_password(password, email=email)
        user = create_user(db, email, password)
    elif caller is None:
        raise Problem(401, "sign-in-required", "This invitation is for an existing account: sign in as it, "
                      "then accept with your access token.", headers={"WWW-Authenticate": "Bearer"})
    elif caller.user_id != user.id:
        raise forbidden("This invitation is for another account than the one signed in.")
    if db.scalar(select(Membership.id).where(Membership.tenant_id == tenant.id, Membership.user_id == user.id)):
        raise Problem(409, "already-member", "You are already a member of this tenant.")
    membership = Membership(user_id=user.id, tenant_id=tenant.id, role=role.value)
    db.add(membership)
    db.flush()
    actor_meta = AuditMeta(f"user:{user.id}", meta.source_ip, meta.request_id)
    append(db, actor_meta, "member.join", f"user:{user.id}", tenant_id=tenant.id,
           details={"role": role.value, "invitation": str(link.id), "invited_by": link.payload.get("invited_by"),
                    "account_created": created})
    return Joined(membership, created)
