"""The pages the mailed links open: confirm a signup, accept an invitation, reset a password.

A link carries its token in the URL fragment (``#token=...``), which browsers never send to
a server; ``console.js`` moves it into the form's token field, and without JavaScript the
reader pastes it there. Each form posts to the API's own domain function (same checks, same
audit records) and shows the API's reason when a link is used, expired or unknown.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from api.auth.password_router import reset_password
from api.console.deps import CsrfChecked
from api.console.session import PATH, LoginRequired, Viewer, csrf_token, viewer_of
from api.console.templating import render
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited
from api.problems import Problem
from api.services import Services
from api.tenants import members
from api.tenants.signup import verify_signup

router = APIRouter(prefix=PATH)

Token = Annotated[str, Form(min_length=1, max_length=200)]
Password = Annotated[str, Form(max_length=1024)]

PAGES = {
    "signup": {"title": "Confirm your signup", "action": f"{PATH}/signup/verify", "button": "Create my organisation",
               "intro": "Confirm your email address to create the organisation you signed up."},
    "invitation": {"title": "Accept the invitation", "action": f"{PATH}/invitations/accept", "button": "Join",
                   "intro": "Join the organisation that invited you."},
    "reset": {"title": "Choose a new password", "action": f"{PATH}/reset-password", "button": "Set the password",
              "intro": "Choose a new password for your account. Every session of the account ends."},
}
DONE = {
    "signup": ("Your organisation is being created",
               "Your address is confirmed. The organisation is being set up now; sign in to follow it."),
    "invitation": ("You joined the organisation", "Your membership is active; sign in to use it."),
    "reset": ("Your password is changed", "Every session of your account has ended; sign in with the new password."),
}


def _viewer_if_signed_in(request: Request, services: Services) -> Viewer | None:
    try:
        return viewer_of(request, services)
    except LoginRequired:
        return None


def _form(request: Request, kind: str, viewer: Viewer | None = None, *, error: Problem | None = None,
          token: str = ""):
    page = PAGES[kind]
    extra = {} if viewer else {"csrf_token": csrf_token(request)}
    # A refused password leaves the link unused: the form keeps its token for the next try.
    kept = token if error is not None and error.status == 422 else ""
    return render(request, viewer, "mailed_link.html", status_code=error.status if error else 200, kind=kind,
                  page=page, error=error, token=kept, **extra)


def _done(kind: str) -> RedirectResponse:
    return RedirectResponse(f"{PATH}/done/{kind}", status_code=303)


@router.get("/done/{kind}")
def done(request: Request, kind: str):
    if kind not in DONE:
        raise Problem(404, "not-found", "There is no such page.")
    title, text = DONE[kind]
    return render(request, None, "link_done.html", title=title, text=text, csrf_token=csrf_token(request))


@router.get("/signup/verify")
def signup_form(request: Request):
    return _form(request, "signup")


@router.post("/signup/verify", dependencies=[CsrfChecked])
def signup_verify(request: Request, services: ServicesDep, db: SystemDb, token: Token):
    try:
        verify_signup(db, services, token.strip(), audit_meta(request))
    except Problem as refused:
        return _form(request, "signup", error=refused)
    mark_audited(request)
    return _done("signup")


@router.get("/invitations/accept")
def invitation_form(request: Request, services: ServicesDep):
    return _form(request, "invitation", _viewer_if_signed_in(request, services))


@router.post("/invitations/accept", dependencies=[CsrfChecked])
def invitation_accept(request: Request, services: ServicesDep, db: SystemDb, token: Token, password: Password = ""):
    viewer = _viewer_if_signed_in(request, services)
    caller = viewer.principal if viewer else None
    try:
        with db.begin():
            members.accept(db, token.strip(), password or None, caller, audit_meta(request))
    except Problem as refused:
        return _form(request, "invitation", viewer, error=refused, token=token)
    mark_audited(request)
    return _done("invitation")


@router.get("/reset-password")
def reset_form(request: Request):
    return _form(request, "reset")


@router.post("/reset-password", dependencies=[CsrfChecked])
def reset(request: Request, db: SystemDb, token: Token, new_password: Password):
    try:
        with db.begin():
            reset_password(db, request, token.strip(), new_password)
    except Problem as refused:
        return _form(request, "reset", error=refused, token=token)
    mark_audited(request)
    return _done("reset")
