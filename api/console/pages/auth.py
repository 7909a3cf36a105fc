"""Sign in and out. The login is the API's: same throttle, same session, same audit records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from api.audit.chain import append
from api.auth import sessions
from api.auth.login import password_login
from api.auth.sessions import RevokedReason
from api.console.deps import ConsoleViewer, CsrfChecked
from api.console.session import PATH, clear_session_cookies, csrf_token, set_session_cookies
from api.console.templating import render
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited

router = APIRouter(prefix=PATH)


def _safe_next(next_url: str | None) -> str:
    """Only a console path: never a redirect to another site."""
    if next_url and next_url.startswith(PATH + "/") and "//" not in next_url and "\\" not in next_url:
        return next_url
    return f"{PATH}/tenants"


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/tenants", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str | None = None):
    return render(request, None, "login.html", next=_safe_next(next), error=None, email="",
                  csrf_token=csrf_token(request))


@router.post("/login", dependencies=[CsrfChecked])
def login(
    request: Request, services: ServicesDep, db: SystemDb,
    email: Annotated[str, Form(max_length=320)], password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
):
    outcome = password_login(db, request, services, email, password, via="console")
    if outcome.signed_in is None:
        locked = outcome.retry_after is not None
        error = "Too many failed sign-ins; try again later." if locked else "Email or password is wrong."
        return render(request, None, "login.html", status_code=429 if locked else 401, next=_safe_next(next),
                      error=error, email=email, csrf_token=csrf_token(request))
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookies(response, request, outcome.signed_in)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, viewer: ConsoleViewer, db: SystemDb) -> RedirectResponse:
    with db.begin():
        sessions.revoke_session(db, viewer.principal.session_id, RevokedReason.LOGOUT)
        append(db, audit_meta(request, viewer.principal.actor), "auth.logout", f"session:{viewer.principal.session_id}")
    mark_audited(request)
    response = RedirectResponse(f"{PATH}/login", status_code=303)
    clear_session_cookies(response)
    return response
