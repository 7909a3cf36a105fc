"""Password sign-in and refresh-token reuse, shared by the API's auth routes and the console.

Throttled per account and per client address, audited whatever the outcome (never the
password), and on success the start of a session (``api.auth.sessions``).

A login is two transactions, not one, on purpose: its attempt must be counted and committed
before the password is checked, so that concurrent logins see each other's attempts, and the
counters' row locks must not be held across the password hash, or every login from one
address would wait behind the others' hashes. One transaction cannot do both. The second
transaction takes the attempt back with the session it starts, and a separate one does if
that fails (``LoginThrottle.right_password``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request

from api.audit.chain import append
from api.auth import sessions
from api.auth.passwords import verify_password
from api.auth.sessions import RefreshReused, RevokedReason, SignedIn
from api.auth.throttle import LoginThrottle, client_address
from api.auth.users import find_user
from api.db.session import ScopedSession
from api.dependencies import audit_meta, mark_audited
from api.services import Services


@dataclass(frozen=True)
class LoginOutcome:
    signed_in: SignedIn | None = None
    retry_after: int | None = None  # seconds, when a lockout refused the attempt


def password_login(
    db: ScopedSession, request: Request, services: Services, email: str, password: str, *, via: str = "api"
) -> LoginOutcome:
    throttle = LoginThrottle.of(services.settings, email, client_address(request), datetime.now(UTC))
    with db.begin():  # short: the counters' row locks are held only while counting
        attempt = throttle.count_attempt(db)
        if attempt.retry_after:
            append(db, audit_meta(request), "auth.login", "user", result="denied", details={"reason": "locked out"})
        user = None if attempt.retry_after else find_user(db, email)
    if attempt.retry_after:
        mark_audited(request)
        return LoginOutcome(retry_after=attempt.retry_after)
    if not verify_password(user.password_hash if user else None, password):
        with db.begin():
            throttle.audit_lockouts(db, audit_meta(request), attempt.lockouts)
            append(db, audit_meta(request), "auth.login", "user", result="denied",
                   details={"reason": "bad credentials"})
        mark_audited(request)
        return LoginOutcome()
    with throttle.right_password(db, attempt):
        signed_in = sessions.start(db, services, user)
        details = {"session_id": str(signed_in.session_id)} | ({"via": via} if via != "api" else {})
        append(db, audit_meta(request, signed_in.principal.actor), "auth.login", f"user:{user.id}", details=details)
    mark_audited(request)
    return LoginOutcome(signed_in=signed_in)


def refresh_session(db: ScopedSession, request: Request, services: Services, refresh_token: str) -> SignedIn:
    """Use a refresh token (``sessions.rotate``), audited, in the caller's transaction; a reuse
    ends its session (``revoke_reused``) before it is raised."""
    try:
        signed_in = sessions.rotate(db, services, refresh_token)
    except RefreshReused as reused:
        revoke_reused(db, request, reused)
        raise
    details = {"repeated": True} if signed_in.repeated else {}
    append(db, audit_meta(request, signed_in.principal.actor), "auth.refresh", f"session:{signed_in.session_id}",
           details=details)
    return signed_in


def revoke_reused(db: ScopedSession, request: Request, reused: RefreshReused) -> None:
    """A used refresh token came back: someone else has a copy. End the whole session."""
    denied = sessions.revoke_session(db, reused.session_id, RevokedReason.REFRESH_REUSE)
    append(db, audit_meta(request, f"user:{reused.user_id}"), "auth.refresh_reuse", f"session:{reused.session_id}",
           result="denied", details={"access_tokens_revoked": denied})
