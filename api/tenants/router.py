"""Tenant endpoints: signup and its verification, another organisation for a signed-in user,
reading, lifecycle requests, history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from sqlalchemy import select

from api.auth.dependencies import TenantContext, authenticated, require
from api.auth.throttle import client_address
from api.auth.roles import READERS, TenantRole
from api.auth.tokens import Principal
from api.db.models import Membership, Operation, OperationKind, Tenant, User
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited
from api.problems import Problem, not_found, problems
from api.tenants.history import tenant_history
from api.tenants.lifecycle import request_operation
from api.tenants.schemas import (
    AcceptedOperation,
    ChangeTierRequest,
    MemberOut,
    OperationRef,
    OrganizationRequest,
    SignupAccepted,
    SignupRequest,
    SignupVerification,
    TenantHistory,
    TenantOut,
)
from api.tenants.organizations import create_for_user
from api.tenants.signup import request_signup, verify_signup
from api.tenants.signup_limits import LIMIT_PROBLEMS

router = APIRouter(tags=["tenants"])

IDEMPOTENCY = ("8 to 200 characters, unique per intended request; a retry reuses it and gets the first answer. "
               "Reused with another body: 422 `/problems/idempotency-key-reused`")
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200, description=IDEMPOTENCY)]
# Typed `str` with a None default (not `str | None`): a header is never null, and the document
# then states the key's own constraints instead of an `anyOf` with null.
OptionalIdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200,
                                               description=f"Optional. {IDEMPOTENCY}")]


def _accepted(response: Response, tenant: Tenant, operation: Operation) -> AcceptedOperation:
    ref = OperationRef.of(operation)
    response.headers["Location"] = ref.url
    return AcceptedOperation(tenant=TenantOut.of(tenant), operation=ref)


@contextmanager
def _limits_audited_once(request: Request) -> Iterator[None]:
    """A signup refused by a limit is not audited request by request (a flood would flood the
    audit log): the limit audited its lock once per window."""
    try:
        yield
    except Problem as refused:
        if refused.code in LIMIT_PROBLEMS:
            mark_audited(request)
        raise


INVALID_NEW_TENANT = ("`/problems/invalid-slug`, `/problems/unknown-tier`, `/problems/idempotency-key-reused`, "
                      "`/problems/validation-error`")
SLUG_TAKEN = "`/problems/duplicate-slug`: another tenant has this slug"
SIGNUP_LIMITED = "`/problems/too-many-signups`: the client address, the email domain or the user signed up too often"
LIFECYCLE = problems({
    409: "`/problems/invalid-state`: the tenant's status does not allow this; `/problems/operation-in-progress`",
    422: "`/problems/idempotency-key-reused`; `/problems/validation-error`",
})


@router.post(
    "/v1/signup", status_code=status.HTTP_202_ACCEPTED,
    responses=problems({
        409: SLUG_TAKEN,
        422: f"`/problems/weak-password` (`reasons`); {INVALID_NEW_TENANT}",
        429: f"{SIGNUP_LIMITED}; `/problems/too-many-pending-signups`: too many of the domain await verification; "
             "`/problems/signups-paused`: too many signups await verification in all",
        503: "`/problems/mail-unavailable`: the confirmation mail could not be sent",
    }),
    summary="Sign up an organisation: mails the owner a link; nothing is created until it is followed",
    description="The answer is the same for an email that already has an account (that address is mailed a "
    "note instead of a link). 429 when the client address or the email domain signed up too often, or too many "
    "signups of the domain, or in all, await verification.",
)
def post_signup(
    body: SignupRequest, request: Request, services: ServicesDep, db: SystemDb, idempotency_key: IdempotencyKey
) -> SignupAccepted:
    with _limits_audited_once(request):
        request_signup(db, services, body, idempotency_key, address=client_address(request), meta=audit_meta(request))
    mark_audited(request)
    return SignupAccepted()


@router.post(
    "/v1/signup/verify", status_code=status.HTTP_202_ACCEPTED,
    responses=problems({
        409: "`/problems/duplicate-slug`: the slug or the email was taken since the signup; "
             "`/problems/email-registered`",
        410: "`/problems/verification-link-invalid`: the link is unknown, expired or already used (`reason`)",
    }),
    summary="Follow a signup's mailed link: creates the organisation and starts its provisioning",
)
def post_signup_verify(
    body: SignupVerification, request: Request, response: Response, services: ServicesDep, db: SystemDb
) -> AcceptedOperation:
    created = verify_signup(db, services, body.token, audit_meta(request))
    mark_audited(request)
    return _accepted(response, created.tenant, created.operation)


@router.post(
    "/v1/organizations", status_code=status.HTTP_202_ACCEPTED,
    responses=problems({409: SLUG_TAKEN, 422: INVALID_NEW_TENANT, 429: SIGNUP_LIMITED}),
    summary="Another organisation, owned by the signed-in caller; provisioning runs in the background",
)
def post_organization(
    body: OrganizationRequest, request: Request, response: Response, services: ServicesDep, db: SystemDb,
    principal: Annotated[Principal, authenticated()], idempotency_key: IdempotencyKey,
) -> AcceptedOperation:
    meta = audit_meta(request, principal.actor)
    with _limits_audited_once(request):
        created = create_for_user(db, services, principal, body, idempotency_key, address=client_address(request),
                                  meta=meta)
    mark_audited(request)
    return _accepted(response, created.tenant, created.operation)


@router.get("/v1/tenants", summary="Tenants the caller belongs to (all of them for platform roles)")
def list_tenants(principal: Annotated[Principal, authenticated()], services: ServicesDep, db: SystemDb) -> list[TenantOut]:
    query = select(Tenant).order_by(Tenant.created_at)
    if not principal.has_platform_role(READERS):
        query = query.where(Tenant.id.in_(list(principal.memberships)))
    with db.begin():
        return [TenantOut.of(t) for t in db.scalars(query)]


@router.get("/v1/tenants/{tenant_id}", summary="One tenant")
def get_tenant(ctx: Annotated[TenantContext, require(TenantRole.VIEWER, platform=READERS)]) -> TenantOut:
    with ctx.db.begin():
        tenant = ctx.db.get(Tenant, ctx.tenant_id)
        if tenant is None:
            raise not_found("Tenant")
        return TenantOut.of(tenant)


@router.get("/v1/tenants/{tenant_id}/operations", summary="The tenant's operations, newest first")
def list_operations(ctx: Annotated[TenantContext, require(TenantRole.VIEWER, platform=READERS)]) -> list[OperationRef]:
    query = select(Operation).where(Operation.tenant_id == ctx.tenant_id).order_by(Operation.created_at.desc())
    with ctx.db.begin():
        return [OperationRef.of(o) for o in ctx.db.scalars(query)]


@router.get("/v1/tenants/{tenant_id}/members", summary="Members and their roles")
def list_members(ctx: Annotated[TenantContext, require(TenantRole.ADMIN, platform=READERS)]) -> list[MemberOut]:
    query = select(Membership, User).join(User, User.id == Membership.user_id).where(Membership.tenant_id == ctx.tenant_id)
    with ctx.db.begin():
        return [MemberOut(user_id=u.id, email=u.email, role=m.role) for m, u in ctx.db.execute(query)]


@router.post("/v1/tenants/{tenant_id}/suspend", status_code=202, summary="Scale workloads to zero and suspend the license",
             responses=LIFECYCLE)
def suspend(
    response: Response, ctx: Annotated[TenantContext, require(TenantRole.OWNER)], idempotency_key: OptionalIdempotencyKey = None
) -> AcceptedOperation:
    return _accepted(response, *request_operation(ctx, OperationKind.SUSPEND, idempotency_key))


@router.post("/v1/tenants/{tenant_id}/reactivate", status_code=202, summary="Undo a suspension",
             responses={**LIFECYCLE, **problems({
                 402: "`/problems/payment-required`: suspended for non-payment; paying the open invoice reactivates"})})
def reactivate(
    response: Response, ctx: Annotated[TenantContext, require(TenantRole.OWNER)], idempotency_key: OptionalIdempotencyKey = None
) -> AcceptedOperation:
    return _accepted(response, *request_operation(ctx, OperationKind.REACTIVATE, idempotency_key))


@router.post(
    "/v1/tenants/{tenant_id}/tier",
    status_code=202,
    summary="Change tier; a shared<->dedicated move is previewed and waits for POST /v1/operations/{id}/confirm",
    responses={**LIFECYCLE, **problems({
        402: "`/problems/payment-required`: the subscription is neither active nor trialing",
        422: "`/problems/same-tier`, `/problems/unknown-tier`, `/problems/idempotency-key-reused`, "
             "`/problems/validation-error`",
    })},
)
def change_tier(
    body: ChangeTierRequest,
    response: Response,
    ctx: Annotated[TenantContext, require(TenantRole.OWNER)],
    idempotency_key: OptionalIdempotencyKey = None,
) -> AcceptedOperation:
    return _accepted(response, *request_operation(ctx, OperationKind.CHANGE_TIER, idempotency_key, body.model_dump()))


@router.delete("/v1/tenants/{tenant_id}", status_code=202, summary="Destroy the stack and scrub personal data (audit kept)",
               responses=LIFECYCLE)
def delete_tenant(
    response: Response, ctx: Annotated[TenantContext, require(TenantRole.OWNER)], idempotency_key: OptionalIdempotencyKey = None
) -> AcceptedOperation:
    return _accepted(response, *request_operation(ctx, OperationKind.DELETE, idempotency_key))


@router.get("/v1/tenants/{tenant_id}/history", summary="Audit records joined with the stack's update history")
def history(ctx: Annotated[TenantContext, require(TenantRole.ADMIN, platform=READERS)]) -> TenantHistory:
    return tenant_history(ctx)
