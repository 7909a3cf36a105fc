"""A viewer's access to one tenant, by the API's own rule (``check_tenant_access``).

Console pages of a tenant need admin or owner in it, or a platform reader's role; a tenant
that is not the viewer's answers 404, as in the API, so its existence is not revealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from api.auth.dependencies import TenantContext, check_tenant_access
from api.auth.roles import OPERATORS, READERS, PlatformRole, TenantRole
from api.console.session import Viewer
from api.db.session import Scope
from api.problems import forbidden
from api.services import Services


@contextmanager
def tenant_scope(
    request: Request, viewer: Viewer, services: Services, tenant_id: uuid.UUID,
    role: TenantRole | None = TenantRole.ADMIN, platform: tuple[PlatformRole, ...] = READERS,
) -> Iterator[TenantContext]:
    """The API's tenant context for the viewer (its session scoped to the tenant by RLS)."""
    check_tenant_access(viewer.principal, tenant_id, role, platform)
    with services.db.session(Scope.tenant(tenant_id)) as session:
        yield TenantContext(request, viewer.principal, services, session, tenant_id)


def require_operator(viewer: Viewer) -> None:
    """For platform-wide changes: an auditor's forged form post ends here."""
    if not viewer.principal.has_platform_role(OPERATORS):
        raise forbidden("This needs the platform role operator.")
