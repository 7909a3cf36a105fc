"""Member endpoints: invite, accept an invitation, change a role, remove (rules in ``members``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Request, Response, status
from pydantic import BaseModel, EmailStr, Field

from api.auth.dependencies import OPTIONAL_BEARER, TenantContext, maybe_authenticated, require
from api.auth.passwords import RULES, NewPassword
from api.auth.roles import TenantRole
from api.auth.tokens import Principal
from api.dependencies import SystemDb, audit_meta, mark_audited
from api.problems import problems
from api.tenants import members
from api.tenants.schemas import MemberOut

router = APIRouter(tags=["members"])

FORBIDDEN_ROLE = "`/problems/forbidden`: the role is higher than the caller's, or the member outranks the caller"
LAST_OWNER = "`/problems/last-owner`: the tenant's last owner can be neither demoted nor removed"


class InvitationRequest(BaseModel):
    email: EmailStr
    role: TenantRole = Field(description="Up to the inviter's own role: only an owner invites owners")


class InvitationOut(BaseModel):
    id: uuid.UUID
    email: str
    role: TenantRole
    expires_at: datetime


class AcceptRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="From the mailed link")
    password: NewPassword | None = Field(
        default=None, description=f"Only when the email has no account yet: the new account's password. {RULES}")


class JoinedOut(BaseModel):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: TenantRole
    account_created: bool
    detail: str = "Sign in (or refresh your access token) to use the new membership."


class RoleChange(BaseModel):
    role: TenantRole


@router.post("/v1/tenants/{tenant_id}/invitations", status_code=status.HTTP_201_CREATED,
             summary="Invite an email to join as a role (mails a single-use link; owner or admin)",
             responses=problems({
                 403: FORBIDDEN_ROLE,
                 409: "`/problems/already-member`; `/problems/tenant-closed`: the tenant is being deleted",
             }))
def invite(body: InvitationRequest, background: BackgroundTasks,
           ctx: Annotated[TenantContext, require(TenantRole.ADMIN)]) -> InvitationOut:
    with ctx.db.begin():
        invitation = members.invite(ctx, body.email, body.role)
    background.add_task(ctx.services.mailer.send, invitation.message)
    link = invitation.link.link
    return InvitationOut(id=link.id, email=invitation.email, role=invitation.role, expires_at=link.expires_at)


@router.post("/v1/invitations/accept", summary="Join a tenant with an invitation's token "
             "(signed in for an existing account; with a password to create a new one)", openapi_extra=OPTIONAL_BEARER,
             responses=problems({
                 400: "`/problems/invalid-link`: the token is unknown, expired or used; `/problems/bad-request`",
                 401: "`/problems/sign-in-required`: the email has an account, sign in as it; "
                      "`/problems/unauthorized`: the access token given is not valid",
                 403: "`/problems/forbidden`: the invitation is for another account than the one signed in",
                 409: "`/problems/already-member`; `/problems/tenant-closed`",
                 422: "`/problems/password-required`: no account has this email yet; `/problems/weak-password`; "
                      "`/problems/validation-error`",
             }))
def accept(body: AcceptRequest, request: Request, db: SystemDb,
           caller: Annotated[Principal | None, maybe_authenticated()]) -> JoinedOut:
    with db.begin():
        joined = members.accept(db, body.token, body.password, caller, audit_meta(request))
    mark_audited(request)
    membership = joined.membership
    return JoinedOut(tenant_id=membership.tenant_id, user_id=membership.user_id, role=TenantRole(membership.role),
                  account_created=joined.account_created)


@router.patch("/v1/tenants/{tenant_id}/members/{user_id}",
              summary="Change a member's role; their access tokens are revoked at once (owner or admin)",
              responses=problems({403: FORBIDDEN_ROLE, 409: LAST_OWNER}))
def change_role(user_id: uuid.UUID, body: RoleChange,
                ctx: Annotated[TenantContext, require(TenantRole.ADMIN)]) -> MemberOut:
    with ctx.db.begin():
        members.change_role(ctx, user_id, body.role)
        member, user = members.member_of(ctx, user_id)
        return MemberOut(user_id=user.id, email=user.email, role=member.role)


@router.delete("/v1/tenants/{tenant_id}/members/{user_id}", status_code=204,
               summary="Remove a member; their access tokens are revoked at once (owner or admin)",
               responses=problems({403: FORBIDDEN_ROLE, 409: LAST_OWNER}))
def remove(user_id: uuid.UUID, ctx: Annotated[TenantContext, require(TenantRole.ADMIN)]) -> Response:
    with ctx.db.begin():
        members.remove(ctx, user_id)
    return Response(status_code=204)
