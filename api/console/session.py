"""The console's sign-in: the API's own sessions, carried in cookies.

A console login starts the same session as ``POST /v1/auth/login`` (throttled, audited, revocable)
and keeps its access and refresh tokens in HttpOnly cookies scoped to ``/console``. A page
request verifies the access token as the API does (signature, expiry, ``jti`` not revoked); an
expired one is exchanged once for a new pair through the session's refresh token, and the new
cookies ride on that page's response. Requests of one browser that renew together (a page and
its event stream, two tabs) get the same new refresh token (the reuse interval, api.auth.sessions).

Forms carry a CSRF token that must equal the ``csrf`` cookie (double submit); the cookie is
random per browser and SameSite=Strict, and a cross-site ``Origin`` is refused before that.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request, Response

from api.auth.jws import TokenInvalid
from api.auth.roles import OPERATORS, READERS, TenantRole
from api.auth.login import refresh_session
from api.auth.sessions import RefreshRefused, SignedIn, access_token_revoked
from api.auth.tokens import Principal, principal_from_token
from api.db.models import User
from api.db.session import Scope
from api.services import Services

PATH = "/console"
ACCESS_COOKIE = "cameleer_console_access"
REFRESH_COOKIE = "cameleer_console_refresh"
CSRF_COOKIE = "cameleer_console_csrf"
CSRF_FIELD = "csrf_token"
RENEWED_SCOPE_KEY = "cameleer.console.renewed"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Exception):
    """A form post without the browser's CSRF token, or from another site."""


@dataclass
class Viewer:
    """Who is looking at a console page, and what the page may offer them."""

    principal: Principal
    email: str
    csrf_token: str
    renewed: SignedIn | None = None

    @property
    def is_operator(self) -> bool:
        return self.principal.has_platform_role(OPERATORS)

    @property
    def sees_every_tenant(self) -> bool:
        return self.principal.has_platform_role(READERS)

    @property
    def role_label(self) -> str:
        if self.principal.platform_roles:
            return ", ".join(sorted(r.value for r in self.principal.platform_roles))
        return "tenant member"

    def tenant_role(self, tenant_id) -> TenantRole | None:
        return self.principal.role_in(tenant_id)

    def administers(self) -> list:
        """The tenants whose console pages this member may open (admin or owner)."""
        return [t for t, role in self.principal.memberships.items() if role.satisfies(TenantRole.ADMIN)]


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookies(response: Response, request: Request, signed_in: SignedIn) -> None:
    secure = secure_cookies(request)
    response.set_cookie(ACCESS_COOKIE, signed_in.access.token, max_age=signed_in.refresh_expires_in, path=PATH,
                        httponly=True, secure=secure, samesite="strict")
    response.set_cookie(REFRESH_COOKIE, signed_in.refresh_token, max_age=signed_in.refresh_expires_in, path=PATH,
                        httponly=True, secure=secure, samesite="strict")


def clear_session_cookies(response: Response) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path=PATH)


def csrf_token(request: Request) -> str:
    """The browser's CSRF token (a new one when it has none; ``remember_csrf`` stores it)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if 20 <= len(token) <= 100 else secrets.token_urlsafe(32)


def remember_csrf(response: Response, request: Request, token: str) -> None:
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, path=PATH, httponly=True, secure=secure_cookies(request),
                            samesite="strict")


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form post from another site or without this browser's token."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise CsrfRefused("the form was posted from another site")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRefused("the form was posted from another site")
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if not cookie or not submitted or not secrets.compare_digest(cookie, submitted):
        raise CsrfRefused("the form's security token is missing or stale; reload the page and try again")


def viewer_of(request: Request, services: Services) -> Viewer:
    """The signed-in viewer, renewing an expired access token once; else :class:`LoginRequired`
    (raised after the transaction, which keeps a reused session's revocation)."""
    next_url = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/?=&")
    with services.db.session(Scope.system()) as db, db.begin():
        principal = _principal_from_access_cookie(request, services, db)
        renewed = None
        if principal is None:
            renewed = _renew(request, services, db)
            principal = renewed.principal if renewed else None
        email = _email_of(db, principal) if principal else None
    if email is None:
        raise LoginRequired(next_url)
    if renewed is not None:
        request.scope[RENEWED_SCOPE_KEY] = renewed
    return Viewer(principal, email, csrf_token(request), renewed)


def renewed_on(request: Request) -> SignedIn | None:
    """The session renewed while serving this request: its response, whatever it is (a page, a
    redirect, an error), must carry the new cookies, or the browser's next request would
    present the used refresh token, which ends the session as a reuse."""
    return request.scope.get(RENEWED_SCOPE_KEY)


def _principal_from_access_cookie(request: Request, services: Services, db) -> Principal | None:
    token = request.cookies.get(ACCESS_COOKIE)
    if not token:
        return None
    try:
        principal = principal_from_token(db, services.keys, token, issuer=services.settings.issuer)
    except TokenInvalid:
        return None
    return None if access_token_revoked(db, principal.token_id) else principal


def _renew(request: Request, services: Services, db) -> SignedIn | None:
    """One use of the session's refresh token, as in the API: a reused one ends the session, and
    one repeated within the reuse interval (another tab renewing too) gets the same successor."""
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        return None
    try:
        return refresh_session(db, request, services, token)
    except RefreshRefused:
        return None


def _email_of(db, principal: Principal) -> str | None:
    user = db.get(User, principal.user_id)
    return None if user is None or user.scrubbed_at is not None else user.email
