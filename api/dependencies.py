"""Request-level dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from api.audit.chain import AuditMeta
from api.db.session import Scope, ScopedSession
from api.middleware import request_state
from api.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def audit_meta(request: Request, actor: str | None = None) -> AuditMeta:
    state = request_state(request)
    return AuditMeta(
        actor=actor or state.get("actor") or "anonymous",
        source_ip=request.client.host if request.client else None,
        request_id=state.get("request_id"),
    )


def mark_audited(request: Request) -> None:
    request_state(request)["audited"] += 1


def system_db(services: ServicesDep) -> Iterator[ScopedSession]:
    """A system-scope session (the system role, every tenant's rows): signup, login, platform endpoints."""
    with services.db.session(Scope.system()) as session:
        yield session


SystemDb = Annotated[ScopedSession, Depends(system_db)]
