"""License delivery to tenant servers and customers."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api.auth.dependencies import TenantContext, require
from api.auth.roles import READERS, TenantRole
from api.db.models import License, Tenant
from api.licensing.issue import current_license
from api.problems import PROBLEM_RESPONSES, not_found

router = APIRouter(prefix="/api/license", tags=["licensing"], responses=PROBLEM_RESPONSES)
CACHE_CONTROL = "private, max-age=300, must-revalidate"


class LicenseOut(BaseModel):
    tenant_id: str
    tier: str
    status: str
    kid: str
    issued_at: datetime
    expires_at: datetime
    token: str


def _etag(row: License) -> str:
    return '"' + hashlib.sha256(row.token.encode()).hexdigest()[:32] + '"'


def _current(ctx: TenantContext) -> License:
    with ctx.db.begin():
        row = current_license(ctx.db, ctx.tenant_id)
    if row is None:
        raise not_found("License")
    return row


def _matches(request: Request, etag: str) -> bool:
    candidates = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    return etag in candidates or "*" in candidates


@router.get(
    "/{tenant_id}",
    summary="The tenant's current license (conditional GET with ETag)",
    response_model=LicenseOut,
    responses={304: {"description": "Not modified"}},
)
def get_license(
    request: Request, response: Response, ctx: Annotated[TenantContext, require(TenantRole.VIEWER, platform=READERS)]
) -> Response | LicenseOut:
    row = _current(ctx)
    etag = _etag(row)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request, etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return LicenseOut(
        tenant_id=str(row.tenant_id), tier=row.tier, status=row.status, kid=row.kid,
        issued_at=row.issued_at, expires_at=row.expires_at, token=row.token,
    )


@router.get("/{tenant_id}/download", summary="The current license as a file", response_class=Response)
def download_license(ctx: Annotated[TenantContext, require(TenantRole.ADMIN, platform=READERS)]) -> Response:
    row = _current(ctx)
    with ctx.db.begin():
        slug = ctx.db.get(Tenant, ctx.tenant_id).slug
    return Response(
        content=row.token + "\n",
        media_type="application/jwt",
        headers={
            "Content-Disposition": f'attachment; filename="cameleer-{slug}.license"',
            "ETag": _etag(row),
            "Cache-Control": "private, no-store",
        },
    )
