"""Authorization dependencies: every endpoint declares the role it needs.

* ``require(TenantRole.X)``: a path parameter ``tenant_id``; the caller needs role X or
  higher in that tenant (or one of the listed platform roles). The handler gets a
  :class:`TenantContext` whose session is scoped to that tenant by RLS.
* ``require_operation(TenantRole.X)``: the same for ``operation_id`` paths; ``None``
  means platform roles only.
* ``require_platform(PlatformRole...)``: platform endpoints, the system scope (every tenant's rows).

A caller with no relation to a tenant gets 404 (its existence is not revealed); a
member whose role is too low gets 403.
"""

# No `from __future__ import annotations`: FastAPI reads the __call__ signatures below at runtime.

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from api.audit.chain import AuditMeta, append
from api.auth.jws import TokenInvalid
from api.auth.roles import OPERATORS, PlatformRole, TenantRole
from api.auth.sessions import access_token_revoked
from api.auth.tokens import Principal, principal_from_token
from api.db.models import Operation, Tenant
from api.db.session import Scope, ScopedSession
from api.dependencies import ServicesDep, audit_meta, mark_audited
from api.middleware import request_state
from api.problems import forbidden, not_found, unauthorized
from api.services import Services

bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/login")


def current_principal(
    request: Request,
    services: ServicesDep,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("A bearer access token is required.")
    with services.db.session(Scope.system()) as session:
        try:
            principal = principal_from_token(
                session, services.keys, credentials.credentials, issuer=services.settings.issuer
            )
        except TokenInvalid as exc:
            raise unauthorized(f"The access token is not valid: {exc}.") from exc
        if access_token_revoked(session, principal.token_id):
            raise unauthorized("The access token has been revoked; refresh it or sign in again.")
    request_state(request)["actor"] = principal.actor
    return principal


def optional_principal(
    request: Request,
    services: ServicesDep,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal | None:
    """The caller when an access token is given (a wrong one is still a 401), else None."""
    if credentials is None:
        return None
    return current_principal(request, services, credentials)


@dataclass
class RequestContext:
    """What a handler needs: who, which session, and how to audit."""

    request: Request
    principal: Principal
    services: Services
    db: ScopedSession

    @property
    def meta(self) -> AuditMeta:
        return audit_meta(self.request, self.principal.actor)

    def audit(self, action: str, resource: str, *, tenant_id: uuid.UUID | None = None, **details: Any) -> None:
        """Append an audit record in the handler's current transaction."""
        append(self.db, self.meta, action, resource, tenant_id=tenant_id, details=details)
        mark_audited(self.request)


@dataclass
class TenantContext(RequestContext):
    tenant_id: uuid.UUID

    def audit(self, action: str, resource: str, *, tenant_id: uuid.UUID | None = None, **details: Any) -> None:
        super().audit(action, resource, tenant_id=tenant_id or self.tenant_id, **details)


def check_tenant_access(
    principal: Principal,
    tenant_id: uuid.UUID,
    role: TenantRole | None,
    platform: tuple[PlatformRole, ...],
    what: str = "Tenant",
) -> None:
    if principal.has_platform_role(platform):
        return
    held = principal.role_in(tenant_id)
    if held is None:
        raise not_found(what)
    if role is None:
        names = " or ".join(r.value for r in platform)
        raise forbidden(f"This needs the platform role {names}.")
    if not held.satisfies(role):
        raise forbidden(f"This needs the {role.value} role in the tenant; you have {held.value}.")


class TenantAccess:
    """Dependency for ``/.../{tenant_id}/...`` routes."""

    def __init__(self, role: TenantRole, platform: tuple[PlatformRole, ...]) -> None:
        self.role = role
        self.platform = platform

    def __call__(
        self,
        request: Request,
        tenant_id: uuid.UUID,
        services: ServicesDep,
        principal: Principal = Depends(current_principal),
    ) -> Iterator[TenantContext]:
        check_tenant_access(principal, tenant_id, self.role, self.platform)
        with services.db.session(Scope.tenant(tenant_id)) as session:
            # A platform role passes the check for any id: the handlers may rely on the tenant's row.
            # (Its id only: a loaded row would stay in the session, unrefreshed by later reads.)
            with session.begin():
                if session.scalar(select(Tenant.id).where(Tenant.id == tenant_id)) is None:
                    raise not_found("Tenant")
            yield TenantContext(request, principal, services, session, tenant_id)


class OperationAccess:
    """Dependency for ``/v1/operations/{operation_id}`` routes: access follows the operation's tenant."""

    def __init__(self, role: TenantRole | None, platform: tuple[PlatformRole, ...]) -> None:
        self.role = role
        self.platform = platform

    def __call__(
        self,
        request: Request,
        operation_id: uuid.UUID,
        services: ServicesDep,
        principal: Principal = Depends(current_principal),
    ) -> Iterator[TenantContext]:
        with services.db.session(Scope.system()) as lookup:
            tenant_id = lookup.scalar(select(Operation.tenant_id).where(Operation.id == operation_id))
        if tenant_id is None:
            raise not_found("Operation")
        check_tenant_access(principal, tenant_id, self.role, self.platform, what="Operation")
        with services.db.session(Scope.tenant(tenant_id)) as session:
            yield TenantContext(request, principal, services, session, tenant_id)


class PlatformAccess:
    def __init__(self, roles: tuple[PlatformRole, ...]) -> None:
        self.roles = roles

    def __call__(
        self, request: Request, services: ServicesDep, principal: Principal = Depends(current_principal)
    ) -> Iterator[RequestContext]:
        if not principal.has_platform_role(self.roles):
            names = " or ".join(r.value for r in self.roles)
            raise forbidden(f"This needs the platform role {names}.")
        with services.db.session(Scope.system()) as session:
            yield RequestContext(request, principal, services, session)


def require(role: TenantRole, *, platform: tuple[PlatformRole, ...] = OPERATORS) -> Any:
    return Depends(TenantAccess(role, platform))


def require_operation(role: TenantRole | None, *, platform: tuple[PlatformRole, ...] = OPERATORS) -> Any:
    return Depends(OperationAccess(role, platform))


def require_platform(*roles: PlatformRole) -> Any:
    return Depends(PlatformAccess(tuple(roles)))


def authenticated() -> Any:
    return Depends(current_principal)


def maybe_authenticated() -> Any:
    """Pair with ``openapi_extra=OPTIONAL_BEARER`` on the route: the document then says the token may be left out."""
    return Depends(optional_principal)


# Appended to the route's security requirements: the empty one means "no credentials" is accepted too.
OPTIONAL_BEARER: dict[str, Any] = {"security": [{}]}
