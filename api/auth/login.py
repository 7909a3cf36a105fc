"""Password sign-in and refresh-token reuse, shared by the API's auth routes and the console.

Throttled per account and per client address, audited whatever the outcome (never the
password), and on success the start of a session (``api.auth.sessions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request

from api.audit.chain import append
from api.auth import sessions
from api.auth.sessions import RefreshReused, RevokedReason, SignedIn
from api.auth.throttle import LoginThrottle, client_address
from api.auth.users import authenticate
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
    with db.begin():
        retry_after = throttle.retry_after(db)
        user = None if retry_after else authenticate(db, email, password)
        if retry_after:
            append(db, audit_meta(request), "auth.login", "user", result="denied", details={"reason": "locked out"})
            outcome = LoginOutcome(retry_after=retry_after)
        elif user is None:
            throttle.record_failure_audited(db, audit_meta(request))
            append(db, audit_meta(request), "auth.login", "user", result="denied", details={"reason": "bad credentials"})
            outcome = LoginOutcome()
        else:
            throttle.clear_account(db)
            signed_in = sessions.start(db, services, user)
            details = {"session_id": str(signed_in.session_id)} | ({"via": via} if via != "api" else {})
            append(db, audit_meta(request, signed_in.principal.actor), "auth.login", f"user:{user.id}", details=details)
            outcome = LoginOutcome(signed_in=signed_in)
    mark_audited(request)
    return outcome


def revoke_reused(db: ScopedSession, request: Request, reused: RefreshReused) -> None:
    """A used refresh token came back: someone else has a copy. End the whole session."""
    denied = sessions.revoke_session(db, reused.session_id, RevokedReason.REFRESH_REUSE)
    append(db, audit_meta(request, f"user:{reused.user_id}"), "auth.refresh_reuse", f"session:{reused.session_id}",
           result="denied", details={"access_tokens_revoked": denied})
