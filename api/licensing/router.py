"""License delivery to tenant servers and customers.

``GET /api/license/{tenant_id}`` answers a member's access token here, and the tenant server's
credential (api.server_credential.store), which reads its own tenant's license and no other, in
api.licensing.server_route: that route sits ahead of this one and takes every request carrying
the server key header. This route declares those headers so that the OpenAPI document
describes both ways in.
"""

# No `from __future__ import annotations`: FastAPI reads LicenseReaderAccess.__call__'s signature at runtime.

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from api.auth.dependencies import (
    TenantAccess, TenantContext, bearer, check_tenant_access, current_principal, require,
)
from api.auth.roles import READERS, TenantRole
from api.db.models import License, Tenant
from api.db.session import Scope
from api.dependencies import ServicesDep
from api.licensing.answer import LicenseAnswer, LicenseOut
from api.licensing.issue import current_license
from api.problems import not_found, problems
from api.server_credential import store as server_credential
from api.services import Services

router = APIRouter(prefix="/api/license", tags=["licensing"])
NO_LICENSE = "`/problems/not-found`: no such tenant for the caller, or it has no license yet"


class LicenseReaderAccess(TenantAccess):
    """A member (the role given, or a platform reader) with an access token. The tenant's own
    server with its credential is answered by api.licensing.server_route before this runs."""

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
    ) -> uuid.UUID:
        principal = current_principal(request, services, credentials)
        check_tenant_access(principal, tenant_id, self.role, self.platform)
        return tenant_id


def _current(services: Services, tenant_id: uuid.UUID) -> License:
    with services.db.transaction(Scope.tenant(tenant_id)) as session:
        row = current_license(session, tenant_id)
        if row is None:
            raise not_found("License")
        session.expunge(row)
    return row


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
    readable_tenant_id: Annotated[uuid.UUID, Depends(LicenseReaderAccess(TenantRole.VIEWER))],
) -> Response | LicenseOut:
    answer = LicenseAnswer(_current(services, readable_tenant_id), services.clock(), services.settings)
    if answer.matches(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=answer.headers)
    response.headers.update(answer.headers)
    return answer.body()


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
            "ETag": LicenseAnswer(row, ctx.services.clock(), ctx.services.settings).etag,
            "Cache-Control": "private, no-store",
        },
    )
