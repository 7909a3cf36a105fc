"""License delivery to tenant servers and customers.

``GET /api/license/{tenant_id}`` answers a member's access token or the tenant server's
credential (api.server_credential.store), which reads its own tenant's license and no other.
"""

# No `from __future__ import annotations`: FastAPI reads LicenseReaderAccess.__call__'s signature at runtime.

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from sqlalchemy import Row

from api.auth.dependencies import (
    TenantAccess, TenantContext, bearer, check_tenant_access, current_principal, require,
)
from api.auth.roles import READERS, TenantRole
from api.db.models import License, Tenant
from api.db.session import Scope
from api.dependencies import ServicesDep
from api.licensing.issue import current_license, license_by_server_key
from api.licensing.verify import LicensePeriod, license_period
from api.middleware import request_state
from api.problems import Problem, not_found, problems
from api.server_credential import store as server_credential
from api.services import Services

router = APIRouter(prefix="/api/license", tags=["licensing"])
NO_LICENSE = "`/problems/not-found`: no such tenant for the caller, or it has no license yet"
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
class LicenseReader:
    """Whose license the caller may read; the license itself when authenticating the caller
    already read it (the tenant server's request)."""

    tenant_id: uuid.UUID
    license: License | Row | None = None  # a Row with License's columns


class LicenseReaderAccess(TenantAccess):
    """A member (the role given, or a platform reader) with an access token, or the tenant's
    own server with its credential."""

    def __init__(self, role: TenantRole) -> None:
        super().__init__(role, READERS)

    def __call__(  # type: ignore[override]  # another signature: the credential's headers
        self,
        request: Request,
        tenant_id: uuid.UUID,
        services: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
        key_id: Annotated[str | None, Header(alias=server_credential.KEY_HEADER,
                                             description="The tenant server's key id (instead of a bearer token)")] = None,
        signature: Annotated[str | None, Header(alias=server_credential.SIGNATURE_HEADER,
                                                description='t=<unix time>,v1=<HMAC-SHA256(secret, "<t>.GET <path>")>')] = None,
    ) -> LicenseReader:
        if key_id is None:
            principal = current_principal(request, services, credentials)
            check_tenant_access(principal, tenant_id, self.role, self.platform)
            return LicenseReader(tenant_id)
        return _as_tenant_server(request, services, tenant_id, key_id, signature)


def _as_tenant_server(request: Request, services: Services, tenant_id: uuid.UUID, key_id: str,
                      signature: str | None) -> LicenseReader:
    """One statement finds the key id's tenant and that tenant's license (system scope: the key
    id names the tenant; the statement reads no other tenant's license); the secret comes from
    the process's cache of recent OpenBao reads."""
    try:
        signed = server_credential.parse(key_id, signature)
        with services.db.system_read() as connection:
            found = license_by_server_key(connection, signed.key_id)
        if found is None:
            raise server_credential.CredentialRefused(server_credential.UNKNOWN_KEY)
        server_credential.check(signed, found.slug, server_credential.get_message(request.url.path),
                                services.clock(), services.tenant_secrets, services.server_secrets)
    except server_credential.CredentialRefused as exc:
        raise Problem(401, "server-credential-unauthorized", str(exc)) from None
    request_state(request)["actor"] = f"server-key:{key_id}"
    if found.owner != tenant_id or found.license_id is None:
        raise not_found("License")
    return LicenseReader(tenant_id, found)


def _etag(row: License | Row, state: LicensePeriod) -> str:
    return '"' + hashlib.sha256(f"{row.token}:{state.value}".encode()).hexdigest()[:32] + '"'


def _current(services: Services, tenant_id: uuid.UUID) -> License:
    with services.db.transaction(Scope.tenant(tenant_id)) as session:
        row = current_license(session, tenant_id)
        if row is None:
            raise not_found("License")
        session.expunge(row)
    return row


def _matches(request: Request, etag: str) -> bool:
    candidates = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    return etag in candidates or "*" in candidates


@router.get(
    "/{tenant_id}",
    summary="The tenant's current license with its grace periods (conditional GET with ETag); "
            "for a member's access token or the tenant server's credential",
    response_model=LicenseOut,
    responses={304: {"description": "Not modified"}, **problems({
        401: "`/problems/unauthorized` (access token); `/problems/server-credential-unauthorized` (the server's "
             "key id or signature)",
        404: NO_LICENSE,
    })},
)
def get_license(
    request: Request, response: Response, services: ServicesDep,
    reader: Annotated[LicenseReader, Depends(LicenseReaderAccess(TenantRole.VIEWER))],
) -> Response | LicenseOut:
    row = reader.license or _current(services, reader.tenant_id)
    now, settings = services.clock(), services.settings
    grace = timedelta(days=settings.license_expiry_grace_days)
    state = license_period(row.expires_at, now, grace)
    etag = _etag(row, state)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request, etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return LicenseOut(
        tenant_id=str(row.tenant_id), tier=row.tier, status=row.status, kid=row.kid,
        issued_at=row.issued_at, expires_at=row.expires_at, grace_until=row.expires_at + grace, state=state,
        checked_at=now, offline_grace_until=now + timedelta(hours=settings.license_offline_grace_hours),
        token=row.token,
    )


@router.get("/{tenant_id}/download", summary="The current license as a file", response_class=Response,
            responses=problems({404: NO_LICENSE}))
def download_license(ctx: Annotated[TenantContext, require(TenantRole.ADMIN, platform=READERS)]) -> Response:
    row = _current(ctx.services, ctx.tenant_id)
    with ctx.db.begin():
        slug = ctx.db.get(Tenant, ctx.tenant_id).slug
    return Response(
        content=row.token + "\n",
        media_type="application/jwt",
        headers={
            "Content-Disposition": f'attachment; filename="cameleer-{slug}.license"',
            "ETag": _etag(row, license_period(row.expires_at, ctx.services.clock(),
                                              timedelta(days=ctx.services.settings.license_expiry_grace_days))),
            "Cache-Control": "private, no-store",
        },
    )
