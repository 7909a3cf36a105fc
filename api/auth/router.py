"""Login, refresh and logout, the public keys (JWKS) and signing-key rotation."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, EmailStr, Field

from api.audit.chain import append
from api.auth import sessions
from api.auth.dependencies import RequestContext, authenticated, require_platform
from api.auth.passwords import ExistingPassword
from api.auth.roles import PlatformRole
from api.auth.sessions import RefreshRefused, RefreshReused, RevokedReason, SignedIn
from api.auth.tokens import Principal
from api.auth.login import password_login, refresh_session
from api.db.models import KeyPurpose
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited
from api.problems import Problem, not_found, problems, too_many_requests
from api.services import Services

router = APIRouter()

SIGNING_UNAVAILABLE = "`/problems/secrets-unavailable`: the secrets server cannot sign or publish keys now"
KEYS_UNAVAILABLE = problems({503: SIGNING_UNAVAILABLE})


class LoginRequest(BaseModel):
    email: EmailStr
    password: ExistingPassword


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str = Field(description="Single use: POST /v1/auth/refresh exchanges it for a new pair")
    refresh_expires_in: int

    @classmethod
    def of(cls, signed_in: SignedIn) -> TokenResponse:
        return cls(access_token=signed_in.access.token, expires_in=signed_in.access.expires_in,
                   refresh_token=signed_in.refresh_token, refresh_expires_in=signed_in.refresh_expires_in)


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
             responses=problems({
                 401: "`/problems/invalid-credentials`: no account with this email and password",
                 429: "`/problems/too-many-login-attempts`: the account or the client address is locked out",
                 503: SIGNING_UNAVAILABLE,
             }))
def login(body: LoginRequest, request: Request, services: ServicesDep, db: SystemDb) -> TokenResponse:
    outcome = password_login(db, request, services, body.email, body.password)
    if outcome.retry_after:
        raise too_many_requests("too-many-login-attempts", "Too many failed logins; try again later.", outcome.retry_after)
    if outcome.signed_in is None:
        raise Problem(401, "invalid-credentials", "Email or password is wrong.", headers={"WWW-Authenticate": "Bearer"})
    return TokenResponse.of(outcome.signed_in)


@router.post("/v1/auth/refresh", tags=["auth"],
             summary="Exchange a refresh token (once) for a new access and refresh token of the same session",
             responses=problems({
                 401: "`/problems/invalid-refresh-token`: unknown, expired, revoked or used before (a reuse ends "
                      "the session; within a few seconds of its use, the same successor is answered again instead, "
                      "or, once that is used too, this refusal without ending the session)",
                 503: SIGNING_UNAVAILABLE,
             }))
def refresh(body: RefreshRequest, request: Request, services: ServicesDep, db: SystemDb) -> TokenResponse:
    refused = None
    with db.begin():
        try:
            signed_in = refresh_session(db, request, services, body.refresh_token)
        except RefreshReused as reused:
            mark_audited(request)
            refused = reused
        except RefreshRefused as exc:
            refused = exc
    if refused is not None:
        raise Problem(401, "invalid-refresh-token", f"The refresh token is {refused.reason}; sign in again.",
                      headers={"WWW-Authenticate": "Bearer"})
    mark_audited(request)
    return TokenResponse.of(signed_in)


@router.post("/v1/auth/logout", tags=["auth"], status_code=204,
             summary="End the caller's session: its refresh token and access tokens stop working at once")
def logout(request: Request, db: SystemDb, principal: Annotated[Principal, authenticated()]) -> Response:
    with db.begin():
        sessions.revoke_session(db, principal.session_id, RevokedReason.LOGOUT)
        append(db, audit_meta(request, principal.actor), "auth.logout", f"session:{principal.session_id}")
    mark_audited(request)
    return Response(status_code=204)


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


@router.get("/.well-known/jwks.json", tags=["auth"], summary="Public keys of access tokens", responses=KEYS_UNAVAILABLE)
def access_jwks(response: Response, services: ServicesDep, db: SystemDb) -> dict:
    return _jwks(response, services, db, KeyPurpose.ACCESS)


@router.get("/.well-known/license-jwks.json", tags=["licensing"], summary="Public keys of licenses",
            responses=KEYS_UNAVAILABLE)
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
             summary="Stop verifying with a retiring key (and the older versions of its transit key)",
             responses=problems({404: "`/problems/not-found`: no retiring key has this kid"}))
def retire_key(kid: str, ctx: Annotated[RequestContext, require_platform(PlatformRole.OPERATOR)]) -> SigningKeyOut:
    with ctx.db.begin():
        key = ctx.services.keys.retire(ctx.db, kid)
        if key is None:
            raise not_found("Retiring signing key")
        ctx.audit("signing_key.retire", f"signing_key:{kid}")
        return SigningKeyOut(kid=key.kid, purpose=key.purpose.value, status=key.status)
