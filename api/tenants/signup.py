"""Signup in two steps: the request, recorded and answered with a mailed link, and the
link's verification, which creates the organisation (tenant, owner, membership and the
signup operation) in one transaction. Nothing is created or provisioned before it.

The request is validated, counted against the signup limits (api.tenants.signup_limits) and
recorded as a pending signup, the password only as its argon2 hash. A request the limits
refuse whatever it holds (a locked address or domain, too many pending) is refused before
the hash: a hash is ~0.2 s of CPU, which a flood from one address must not buy by the thousand. Its answer is the same
whether or not the email already has an account: a new address is mailed a verification
link, a known one a note that it has an account. Only the latest link mailed to an address
works. The mail is sent after the transaction commits; when it cannot be sent, the pending
signup is removed again and the answer is a 503.

The slug is not reserved by a pending signup: a day-long hold of any name would let anyone
squat names by the thousand. A slug an organisation already has is refused when the signup
is requested (409: slugs are organisations' public names), and again when the link is
followed, where a slug taken meanwhile is a 409 that leaves the link usable.

Idempotent by the ``Idempotency-Key`` header: the same key and body is answered alike and
mails nothing more; with another body it is refused (422). A link works once (api.auth.links,
under its row lock): a second click, even a concurrent one, is a 410 and creates nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from api.audit.chain import AuditMeta, append
from api.auth import links
from api.auth.links import LinkInvalid, LinkPurpose
from api.auth.passwords import hash_password, weak_password_reasons
from api.auth.users import add_user, find_user, normalize_email
from api.db.models import OneTimeLink, PendingSignup, SignupLimitKind
from api.db.session import ScopedSession
from api.mail import Message
from api.operations.service import check_same_request
from api.problems import Problem
from api.services import Services
from api.tenants.creation import Created, NewOrganization, create_organization, slug_taken
from api.tenants.schemas import SignupRequest
from api.tenants.signup_limits import SignupLimits, email_domain
from api.tenants.signup_mail import existing_account_message, verification_message
from api.tiers import checked_slug, tier_named


def _validate(body: SignupRequest) -> None:
    checked_slug(body.slug)
    tier_named(body.tier)
    reasons = weak_password_reasons(body.owner_password, email=body.owner_email, slug=body.slug)
    if reasons:
        raise Problem(422, "weak-password", "The password " + "; ".join(reasons) + ".", reasons=reasons)


def _replayed(db: ScopedSession, idempotency_key: str, request_fingerprint: str) -> bool:
    pending = db.scalar(select(PendingSignup).where(PendingSignup.idempotency_key == idempotency_key))
    if pending is None:
        return False
    check_same_request(pending.request_fingerprint, request_fingerprint)
    return True


def request_signup(
    db: ScopedSession, services: Services, body: SignupRequest, idempotency_key: str, *,
    address: str, meta: AuditMeta, now: datetime | None = None,
) -> None:
    """Record a signup and mail its link (or the existing-account note); raises the refusal."""
    now = now or datetime.now(UTC)
    request_fingerprint = services.fingerprints.of(body.model_dump(mode="json"))
    limits = SignupLimits(services.settings, meta, now)
    domain = email_domain(body.owner_email)
    keys = {SignupLimitKind.ADDRESS: address, SignupLimitKind.DOMAIN: domain}
    with db.begin():
        if _replayed(db, idempotency_key, request_fingerprint):
            return
    _validate(body)
    with db.begin():
        early = limits.refusal_before_work(db, keys, domain)
    if early is not None:
        raise early
    password_hash = hash_password(body.owner_password)  # for a known email too: the same work, the same time
    try:
        with db.begin():
            refusal = (limits.admit(db, keys) or slug_taken(db, body.slug) or limits.pending_refusal(db, domain))
            if refusal is None:
                pending, message = _record(db, services, body, idempotency_key, request_fingerprint, password_hash,
                                           meta, now)
    except IntegrityError:  # a concurrent request with the same key won
        with db.begin():
            if _replayed(db, idempotency_key, request_fingerprint):
                return
        raise
    if refusal is not None:
        raise refusal
    _send_or_withdraw(db, services, pending.id, message)


def _record(
    db: ScopedSession, services: Services, body: SignupRequest, idempotency_key: str, request_fingerprint: str,
    password_hash: str, meta: AuditMeta, now: datetime,
) -> tuple[PendingSignup, Message]:
    settings = services.settings
    email = normalize_email(body.owner_email)
    ttl = timedelta(seconds=settings.signup_verification_ttl_seconds)
    pending = PendingSignup(
        idempotency_key=idempotency_key, request_fingerprint=request_fingerprint, email=email,
        email_domain=email_domain(email), organization_name=body.organization_name, slug=body.slug,
        tier=tier_named(body.tier).name, password_hash=password_hash,
        account_exists=find_user(db, email) is not None, created_at=now, expires_at=now + ttl,
    )
    db.add(pending)
    db.flush()
    append(db, meta, "signup.requested", f"pending_signup:{pending.id}",
           details={"slug": pending.slug, "tier": pending.tier, "email_domain": pending.email_domain,
                    "account_exists": pending.account_exists})
    if pending.account_exists:
        return pending, existing_account_message(settings, email, body.slug)
    issued = links.issue(db, LinkPurpose.VERIFY_EMAIL, email, ttl=ttl, now=now,
                         payload={"pending_signup": str(pending.id)})
    return pending, verification_message(settings, email, body.slug, issued.token)


def _send_or_withdraw(db: ScopedSession, services: Services, pending_id: uuid.UUID, message: Message) -> None:
    try:
        services.mailer.send(message)
    except Exception as exc:
        with db.begin():
            db.execute(delete(OneTimeLink).where(OneTimeLink.payload["pending_signup"].astext == str(pending_id)))
            db.execute(delete(PendingSignup).where(PendingSignup.id == pending_id))
        raise Problem(503, "mail-unavailable", "The confirmation mail could not be sent; try again later.",
                      headers={"Retry-After": "60"}) from exc


def verify_signup(db: ScopedSession, services: Services, token: str, meta: AuditMeta) -> Created:
    """Follow a verification link: create the organisation its signup asked for."""
    try:
        with db.begin():
            link = links.redeem(db, LinkPurpose.VERIFY_EMAIL, token)
            pending = db.get(PendingSignup, uuid.UUID(link.payload["pending_signup"]), with_for_update=True)
            if pending is None or pending.verified_at is not None:
                raise LinkInvalid("expired")
            if find_user(db, pending.email) is not None:
                raise Problem(409, "email-registered", "This email has had an account since the signup; sign in "
                              "and create the organisation from your account.")
            owner = add_user(db, pending.email, pending.password_hash)
            created = create_organization(
                db, services, owner, NewOrganization(pending.organization_name, pending.slug, pending.tier),
                key=f"signup:{pending.idempotency_key}", request_fingerprint=pending.request_fingerprint,
                meta=meta, audit_details={"pending_signup_id": str(pending.id)},
            )
            pending.verified_at = link.used_at
            return created
    except LinkInvalid as exc:
        raise Problem(410, "verification-link-invalid", f"This verification link is {exc.reason}; sign up again, "
                      "or sign in if you followed it before.", reason=exc.reason) from None
    except IntegrityError:  # another signup took the slug or the email at the same moment
        raise Problem(409, "duplicate-slug", "The slug or the email was taken meanwhile; the link still works once "
                      "it is free, or sign up again with another slug.") from None
