"""Login, the public keys (JWKS) and signing-key rotation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy.orm import Session

from api.audit.chain import append
from api.auth.dependencies import RequestContext, authenticated, require_platform
from api.auth.roles import PlatformRole
from api.auth.throttle import LoginThrottle, client_address
from api.auth.tokens import IssuedToken, Principal, issue_access_token, principal_for
from api.auth.users import authenticate
from api.db.models import KeyPurpose, User
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited
from api.problems import PROBLEM_RESPONSES, THROTTLED_RESPONSES, Problem, not_found, too_many_requests
from api.services import Services

router = APIRouter(responses=PROBLEM_RESPONSES)


class LoginRequest(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MeResponse(BaseModel):
    user_id: str
    memberships: dict[str, str]
    platform_roles: list[str]


class SigningKeyOut(BaseModel):
    kid: str
    purpose: str
    status: str


class RotateRequest(BaseModel):
    purpose: KeyPurpose


@router.post("/v1/auth/login", tags=["auth"], summary="Exchange email and password for an access token",
             responses=THROTTLED_RESPONSES)
def login(body: LoginRequest, request: Request, services: ServicesDep, db: SystemDb) -> TokenResponse:
    throttle = LoginThrottle.of(services.settings, body.email, client_address(request), datetime.now(UTC))
    with db.begin():
        retry_after = throttle.retry_after(db)
        user = None if retry_after else authenticate(db, body.email, body.password)
        if retry_after:
            append(db, audit_meta(request), "auth.login", "user", result="denied", details={"reason": "locked out"})
        elif user is None:
            _failed(db, request, throttle)
        else:
            throttle.clear_account(db)
            issued = _issue(db, request, services, user)
    mark_audited(request)
    if retry_after:
        raise too_many_requests("too-many-login-attempts", "Too many failed logins; try again later.", retry_after)
    if user is None:
        raise Problem(401, "invalid-credentials", "Email or password is wrong.", headers={"WWW-Authenticate": "Bearer"})
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)


def _failed(db: Session, request: Request, throttle: LoginThrottle) -> None:
    """Count the failure and audit it, and each lockout it causes (never the password)."""
    for lockout in throttle.record_failure(db):
        append(db, audit_meta(request), "auth.lockout", lockout.resource,
               details={"kind": lockout.kind.value, "locked_until": lockout.locked_until.isoformat()})
    append(db, audit_meta(request), "auth.login", "user", result="denied", details={"reason": "bad credentials"})


def _issue(db: Session, request: Request, services: Services, user: User) -> IssuedToken:
    principal = principal_for(db, user)
    issued = issue_access_token(
        services.keys, principal, issuer=services.settings.issuer, ttl=services.settings.access_token_ttl_seconds
    )
    append(db, audit_meta(request, principal.actor), "auth.login", f"user:{user.id}")
    return issued


@router.get("/v1/auth/me", tags=["auth"], summary="Who the access token belongs to")
def me(principal: Annotated[Principal, authenticated()]) -> MeResponse:
    return MeResponse(
        user_id=str(principal.user_id),
        memberships={str(t): r.value for t, r in principal.memberships.items()},
        platform_roles=sorted(r.value for r in principal.platform_roles),
    )


def _jwks(response: Response, services: ServicesDep, db: SystemDb, purpose: KeyPurpose) -> dict:
    response.headers["Cache-Control"] = "public, max-age=300"
    with db.begin():
        return services.keys.jwks(db, purpose)


@router.get("/.well-known/jwks.json", tags=["auth"], summary="Public keys of access tokens")
def access_jwks(response: Response, services: ServicesDep, db: SystemDb) -> dict:
    return _jwks(response, services, db, KeyPurpose.ACCESS)


@router.get("/.well-known/license-jwks.json", tags=["licensing"], summary="Public keys of licenses")
def license_jwks(response: Response, services: ServicesDep, db: SystemDb) -> dict:
    return _jwks(response, services, db, KeyPurpose.LICENSE)


@router.get("/v1/platform/signing-keys", tags=["platform"], summary="List signing keys (public facts only)")
def list_keys(ctx: Annotated[RequestContext, require_platform(PlatformRole.OPERATOR, PlatformRole.AUDITOR)]) -> list[SigningKeyOut]:
    with ctx.db.begin():
        return [SigningKeyOut(kid=k.kid, purpose=k.purpose.value, status=k.status) for k in ctx.services.keys.published(ctx.db)]


@router.post("/v1/platform/signing-keys/rotate", tags=["platform"], summary="New active key version; the old ones keep verifying")
def rotate_key(body: RotateRequest, ctx: Annotated[RequestContext, require_platform(PlatformRole.OPERATOR)]) -> SigningKeyOut:
    with ctx.db.begin():
        key = ctx.services.keys.rotate(body.purpose)
        ctx.audit("signing_key.rotate", f"signing_key:{key.kid}", purpose=body.purpose.value)
        return SigningKeyOut(kid=key.kid, purpose=key.purpose.value, status=key.status)


@router.post("/v1/platform/signing-keys/{kid}/retire", tags=["platform"],
             summary="Stop verifying with a retiring key (and the older versions of its transit key)")
def retire_key(kid: str, ctx: Annotated[RequestContext, require_platform(PlatformRole.OPERATOR)]) -> SigningKeyOut:
    with ctx.db.begin():
        key = ctx.services.keys.retire(ctx.db, kid)
        if key is None:
            raise not_found("Retiring signing key")
        ctx.audit("signing_key.retire", f"signing_key:{kid}")
        return SigningKeyOut(kid=key.kid, purpose=key.purpose.value, status=key.status)
