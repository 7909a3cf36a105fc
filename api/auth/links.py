"""Single-use, expiring links sent by mail: email verification, invitations, password resets.

A link carries a random 256-bit token. The database keeps only its SHA-256 (a copy of the
table opens nothing), with the link's purpose, subject, expiry and payload; redeeming one
takes the row's lock, checks purpose and expiry, and marks it used in the same
transaction, so a link works exactly once even when two requests race. A state row is
needed anyway to make a link single-use, which is why the token is random rather than a
stateless signed claim: unguessable, expiring, revocable, and shown to nobody but the
mailbox it was sent to.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from api.db.models import OneTimeLink
from api.problems import Problem


class LinkPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    INVITE = "invite"
    RESET_PASSWORD = "reset_password"


class LinkInvalid(Exception):
    """The link is unknown, for another purpose, expired or already used (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def invalid_link(exc: LinkInvalid) -> Problem:
    """The 400 answer to a link that cannot be used."""
    return Problem(400, "invalid-link", f"The link is {exc.reason}; ask for a new one.")


@dataclass(frozen=True)
class IssuedLink:
    token: str  # goes into the mail only
    link: OneTimeLink


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def issue(
    session: Session,
    purpose: LinkPurpose,
    subject: str,
    *,
    ttl: timedelta,
    payload: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> IssuedLink:
    """A new link for ``subject`` (an email or a user id); earlier unused links of the same
    purpose and subject stop working, so only the latest mail counts."""
    now = now or _now()
    revoke(session, purpose, subject, now=now)
    token = secrets.token_urlsafe(32)
    link = OneTimeLink(purpose=purpose.value, token_sha256=_digest(token), subject=subject, tenant_id=tenant_id,
                       payload=payload or {}, created_at=now, expires_at=now + ttl)
    session.add(link)
    session.flush()
    return IssuedLink(token=token, link=link)


def redeem(session: Session, purpose: LinkPurpose, token: str, *, now: datetime | None = None) -> OneTimeLink:
    """Use a link once; raises :class:`LinkInvalid` and changes nothing when it cannot be used."""
    now = now or _now()
    link = session.scalar(
        select(OneTimeLink).where(OneTimeLink.token_sha256 == _digest(token)).with_for_update()
    )
    if link is None or link.purpose != purpose.value:
        raise LinkInvalid("unknown")
    if link.used_at is not None:
        raise LinkInvalid("already used")
    if link.expires_at <= now:
        raise LinkInvalid("expired")
    link.used_at = now
    session.flush()
    return link


def revoke(session: Session, purpose: LinkPurpose, subject: str, *, now: datetime | None = None) -> int:
    """End every unused link of this purpose and subject; how many there were."""
    result = session.execute(
        update(OneTimeLink)
        .where(OneTimeLink.purpose == purpose.value, OneTimeLink.subject == subject, OneTimeLink.used_at.is_(None))
        .values(used_at=now or _now())
    )
    return result.rowcount


def purge(session: Session, *, now: datetime | None = None, keep: timedelta = timedelta(days=1)) -> int:
    """Delete links used or expired more than ``keep`` ago (the audit log keeps what happened)."""
    cutoff = (now or _now()) - keep
    result = session.execute(
        delete(OneTimeLink).where(or_(OneTimeLink.expires_at < cutoff, OneTimeLink.used_at < cutoff))
    )
    return result.rowcount
