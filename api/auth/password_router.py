"""Password change (signed in, with the current password) and reset (a mailed single-use link).

A reset request is answered 202 with the same body whether the account exists or not, and
its mail goes out after the response, so neither the answer nor its timing tells which
emails have accounts. A changed password ends the user's other sessions; a reset ends all.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Request, Response, status
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit.chain import append
from api.auth import links, sessions
from api.auth.dependencies import authenticated
from api.auth.links import LinkInvalid, LinkPurpose, invalid_link
from api.auth.passwords import ExistingPassword, NewPassword, require_strong_password, verify_password
from api.auth.sessions import RevokedReason
from api.auth.throttle import LoginThrottle, client_address
from api.auth.tokens import Principal
from api.auth.users import find_user, set_password
from api.db.models import User
from api.dependencies import ServicesDep, SystemDb, audit_meta, mark_audited
from api.mail import Message
from api.problems import Problem, problems, too_many_requests, unauthorized
from api.services import Services

router = APIRouter(tags=["auth"])

WEAK_PASSWORD = "`/problems/weak-password` (`reasons` lists the rules broken); `/problems/validation-error`"

RESET_ACCEPTED = "If an account has this email, a link to choose a new password has been sent to it."


class PasswordChangeRequest(BaseModel):
    current_password: ExistingPassword
    new_password: NewPassword


class PasswordResetRequest(BaseModel):
    email: EmailStr


class PasswordResetConfirmation(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="From the mailed link")
    new_password: NewPassword


class ResetRequested(BaseModel):
    detail: str = RESET_ACCEPTED


@router.post("/v1/auth/password", status_code=204,
             summary="Change the password (the current one is required); the user's other sessions end",
             responses=problems({
                 403: "`/problems/wrong-password`: the current password is wrong (counts toward the login lockout)",
                 422: WEAK_PASSWORD,
                 429: "`/problems/too-many-login-attempts`: the account or the client address is locked out",
             }))
def change_password(
    body: PasswordChangeRequest, request: Request, services: ServicesDep, db: SystemDb,
    principal: Annotated[Principal, authenticated()],
) -> Response:
    """The current password is checked as a login's is (``api.auth.login``): the attempt counted
    first, in a short transaction of its own, so concurrent wrong ones get at most the lockout's
    maximum of checks; taken back when right. A weak new password is refused before any of it."""
    meta = audit_meta(request, principal.actor)
    with db.begin():
        user = db.scalar(select(User).where(User.id == principal.user_id, User.scrubbed_at.is_(None)))
        if user is None:
            raise unauthorized("The account no longer exists.")
        require_strong_password(body.new_password, email=user.email)
        throttle = LoginThrottle.of(services.settings, user.email, client_address(request), datetime.now(UTC))
        attempt = throttle.count_attempt(db)
    if attempt.retry_after:
        raise too_many_requests("too-many-login-attempts", "Too many wrong passwords; try again later.",
                                attempt.retry_after)
    if not verify_password(user.password_hash, body.current_password):
        with db.begin():
            throttle.audit_lockouts(db, meta, attempt.lockouts)
            append(db, meta, "auth.password_change", f"user:{user.id}", result="denied",
                   details={"reason": "wrong current password"})
        mark_audited(request)
        raise Problem(403, "wrong-password", "The current password is wrong.")
    with throttle.right_password(db, attempt):
        set_password(user, body.new_password)
        ended = sessions.revoke_sessions_of(db, user.id, RevokedReason.PASSWORD_CHANGE, keep=principal.session_id)
        links.revoke(db, LinkPurpose.RESET_PASSWORD, str(user.id))
        append(db, meta, "auth.password_change", f"user:{user.id}", details={"sessions_revoked": ended})
    mark_audited(request)
    return Response(status_code=204)


@router.post("/v1/auth/password-reset", status_code=status.HTTP_202_ACCEPTED,
             summary="Mail a single-use link to choose a new password (the same answer for any email)")
def request_password_reset(
    body: PasswordResetRequest, request: Request, background: BackgroundTasks, services: ServicesDep, db: SystemDb
) -> ResetRequested:
    message = None
    with db.begin():
        user = find_user(db, body.email)
        if user is None:
            append(db, audit_meta(request), "auth.password_reset_request", "user", result="rejected",
                   details={"reason": "no such account"})
        else:
            ttl = timedelta(seconds=services.settings.password_reset_ttl_seconds)
            issued = links.issue(db, LinkPurpose.RESET_PASSWORD, str(user.id), ttl=ttl)
            append(db, audit_meta(request), "auth.password_reset_request", f"user:{user.id}",
                   details={"expires_at": issued.link.expires_at.isoformat()})
            message = _reset_mail(services, user.email, issued.token, ttl)
    mark_audited(request)
    if message is not None:
        background.add_task(services.mailer.send, message)
    return ResetRequested()


def _reset_mail(services: Services, to: str, token: str, ttl: timedelta) -> Message:
    # The token rides in the fragment, which browsers never send to a server: no access log holds it.
    link = f"{services.settings.public_base_url.rstrip('/')}/console/reset-password#token={token}"
    minutes = int(ttl.total_seconds() // 60)
    return Message(to=to, subject="Choose a new Cameleer password", body=(
        "Someone (hopefully you) asked to reset the password of your Cameleer account.\n\n"
        f"Choose a new one here within {minutes} minutes (the link works once):\n\n{link}\n\n"
        "(API: POST /v1/auth/password-reset/confirm with this token and new_password.)\n\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n"))


@router.post("/v1/auth/password-reset/confirm", status_code=204,
             summary="Set a new password with a reset link's token (once); every session of the user ends",
             responses=problems({
                 400: "`/problems/invalid-link`: the token is unknown, expired or used; `/problems/bad-request`",
                 422: WEAK_PASSWORD,
             }))
def confirm_password_reset(body: PasswordResetConfirmation, request: Request, db: SystemDb) -> Response:
    with db.begin():
        reset_password(db, request, body.token, body.new_password)
    mark_audited(request)
    return Response(status_code=204)


def reset_password(db: Session, request: Request, token: str, new_password: str) -> None:
    """Redeem a reset link and set the new password, in the caller's transaction (the API's
    confirmation and the console's form); a refusal (used link, weak password) changes nothing."""
    try:
        link = links.redeem(db, LinkPurpose.RESET_PASSWORD, token)
    except LinkInvalid as exc:
        raise invalid_link(exc) from None
    user = db.scalar(select(User).where(User.id == uuid.UUID(link.subject), User.scrubbed_at.is_(None)))
    if user is None:
        raise invalid_link(LinkInvalid("unknown"))
    require_strong_password(new_password, email=user.email)
    set_password(user, new_password)
    ended = sessions.revoke_sessions_of(db, user.id, RevokedReason.PASSWORD_RESET)
    append(db, audit_meta(request, f"user:{user.id}"), "auth.password_reset", f"user:{user.id}",
           details={"sessions_revoked": ended})
