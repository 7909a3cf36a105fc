"""Sign-in sessions: refresh tokens that rotate, and access tokens that can be revoked at once.

A login starts a session, the family of its refresh tokens. A refresh token is opaque and
random (only its SHA-256 is stored) and works once: using it marks it used and issues a new
one in the same session, with a new access token. A used refresh token presented again means
that a copy of it exists elsewhere (stolen, or a client that kept it): the whole session is
revoked, the tokens of whoever holds the newer ones included.

Except within the reuse interval (``refresh_token_reuse_interval_seconds``, 10 s) after its
use, the grace period of Auth0 and Okta: a client that retries a refresh whose answer it lost,
or two requests of one browser renewing the same expired access token together (a page and its
event stream, two tabs), present it twice without any theft. Such a repeat is answered with the
same successor refresh token (and an access token of its own), not refused: a client whose
answer was lost has no other way to learn its successor, and a refused console request would
show its tab the login form although the session lives on. The successor is kept sealed with a
key derived from the used token (AES-GCM), so only whoever presents that token can open it, and
only the digests of both stay readable. A repeat can never fork the session: once the
successor itself is used, a repeat is refused (the session moves on with the newest token), and
after the interval it is a reuse as before, which ends the session; a stolen token replayed
later still does. The purge forgets sealed successors once their interval has passed.

Every access token is recorded by its ``jti``, with its session and user. Revoking marks the
unexpired ones, and ``current_principal`` looks the ``jti`` up on every request (its primary
key), so a revoked token is refused on the next request, not when it expires.

Lock order, the same everywhere, so that issuing and revoking never deadlock: the user's row,
then session rows, then token rows. Issuing holds the user's row FOR SHARE while it reads the
memberships it puts into the token; revoking a user's tokens takes it FOR NO KEY UPDATE. A
token issued concurrently with a role change or a removal is therefore either seen and revoked
by it, or issued after it, with the memberships as they are then.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from api.auth.tokens import IssuedToken, Principal, issue_access_token, principal_for
from api.db.models import AccessToken, AuthSession, RefreshToken, User
from api.services import Services
from api.settings import Settings


class RevokedReason(enum.StrEnum):
    LOGOUT = "logout"
    REFRESH_REUSE = "refresh_reuse"
    PASSWORD_CHANGE = "password_change"
    PASSWORD_RESET = "password_reset"


@dataclass(frozen=True)
class SignedIn:
    session_id: uuid.UUID
    principal: Principal
    access: IssuedToken
    refresh_token: str  # goes to the client only
    refresh_expires_in: int
    repeated: bool = False  # a repeat within the reuse interval: the successor handed out again


class RefreshRefused(Exception):
    """The refresh token is unknown, expired, or of a revoked session (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefreshReused(RefreshRefused):
    """A refresh token already used was presented again; nothing is changed yet."""

    def __init__(self, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
        super().__init__("already used")
        self.session_id = session_id
        self.user_id = user_id


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _now() -> datetime:
    return datetime.now(UTC)


def lock_user(db: Session, user_id: uuid.UUID, *, exclusive: bool = False) -> User | None:
    """The user's row, locked (see the lock order above); None once scrubbed."""
    query = select(User).where(User.id == user_id, User.scrubbed_at.is_(None))
    locked = query.with_for_update(key_share=True) if exclusive else query.with_for_update(read=True)
    return db.scalar(locked.execution_options(populate_existing=True))


def start(db: Session, services: Services, user: User, *, now: datetime | None = None) -> SignedIn:
    """A new session for ``user`` (whose password was just verified)."""
    now = now or _now()
    lock_user(db, user.id)
    family = AuthSession(id=uuid.uuid4(), user_id=user.id, expires_at=now)
    db.add(family)
    db.flush()
    return _issue(db, services, user, family, now)


def rotate(db: Session, services: Services, refresh_token: str, *, now: datetime | None = None) -> SignedIn:
    """Use a refresh token once: a new refresh and access token in its session (a repeat within
    the reuse interval: the same refresh token again). Raises :class:`RefreshReused` (for the
    caller to revoke the session) or :class:`RefreshRefused`."""
    now = now or _now()
    digest = _digest(refresh_token)
    found = db.execute(select(AuthSession.id, AuthSession.user_id)
                       .join(RefreshToken, RefreshToken.session_id == AuthSession.id)
                       .where(RefreshToken.token_sha256 == digest)).first()
    if found is None:
        raise RefreshRefused("unknown")
    user = lock_user(db, found.user_id)
    family = _locked(db, select(AuthSession).where(AuthSession.id == found.id))
    token = _locked(db, select(RefreshToken).where(RefreshToken.token_sha256 == digest))
    if family is None or token is None or user is None:
        raise RefreshRefused("unknown")
    if family.revoked_at is not None:
        raise RefreshRefused("revoked")
    if token.used_at is not None:
        return _repeat(db, services, user, family, token, refresh_token, now)
    if token.expires_at <= now:
        raise RefreshRefused("expired")
    token.used_at = now
    signed_in = _issue(db, services, user, family, now)
    token.successor_sealed = _seal(signed_in.refresh_token, key_from=refresh_token)
    return signed_in


def _repeat(
    db: Session, services: Services, user: User, family: AuthSession, token: RefreshToken, refresh_token: str,
    now: datetime,
) -> SignedIn:
    """A used token again: within the reuse interval, its unused successor with a new access
    token; else :class:`RefreshReused`."""
    interval = timedelta(seconds=services.settings.refresh_token_reuse_interval_seconds)
    if token.successor_sealed is None or now - token.used_at >= interval:
        raise RefreshReused(family.id, family.user_id)
    successor_token = _unseal(token.successor_sealed, key_from=refresh_token)
    successor = _locked(db, select(RefreshToken).where(RefreshToken.token_sha256 == _digest(successor_token)))
    if successor is None or successor.used_at is not None:
        raise RefreshRefused("already used")
    principal, access = _issue_access(db, services, user, family, now)
    expires_in = int((successor.expires_at - now).total_seconds())
    return SignedIn(family.id, principal, access, successor_token, expires_in, repeated=True)


def _sealing_key(refresh_token: str) -> AESGCM:
    # Derived from the token itself, not from its stored digest: the database alone opens nothing.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cameleer refresh-token successor")
    return AESGCM(hkdf.derive(refresh_token.encode()))


def _seal(successor: str, *, key_from: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + _sealing_key(key_from).encrypt(nonce, successor.encode(), None)


def _unseal(sealed: bytes, *, key_from: str) -> str:
    return _sealing_key(key_from).decrypt(sealed[:12], sealed[12:], None).decode()


def _locked(db: Session, query: Any) -> Any:
    return db.scalar(query.with_for_update().execution_options(populate_existing=True))


def _issue(db: Session, services: Services, user: User, family: AuthSession, now: datetime) -> SignedIn:
    settings = services.settings
    refresh_token = secrets.token_urlsafe(32)
    refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)
    db.add(RefreshToken(token_sha256=_digest(refresh_token), session_id=family.id,
                        issued_at=now, expires_at=now + refresh_ttl))
    family.expires_at = now + refresh_ttl
    principal, access = _issue_access(db, services, user, family, now)
    return SignedIn(family.id, principal, access, refresh_token, settings.refresh_token_ttl_seconds)


def _issue_access(
    db: Session, services: Services, user: User, family: AuthSession, now: datetime
) -> tuple[Principal, IssuedToken]:
    settings = services.settings
    principal = principal_for(db, user)
    access = issue_access_token(services.keys, principal, family.id, issuer=settings.issuer,
                                ttl=settings.access_token_ttl_seconds, now=now)
    db.add(AccessToken(jti=access.jti, session_id=family.id, user_id=user.id, expires_at=access.expires_at))
    db.flush()
    return principal, access


def revoke_session(db: Session, session_id: uuid.UUID, reason: RevokedReason, *, now: datetime | None = None) -> int:
    """End one session: its refresh tokens stop working and its access tokens are denied.
    Returns how many access tokens were denied."""
    now = now or _now()
    db.execute(update(AuthSession).where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
               .values(revoked_at=now, revoked_reason=reason))
    return _deny(db, AccessToken.session_id == session_id, now)


def revoke_sessions_of(
    db: Session, user_id: uuid.UUID, reason: RevokedReason, *,
    keep: uuid.UUID | None = None, now: datetime | None = None,
) -> int:
    """End every session of the user but ``keep``; returns how many were ended."""
    now = now or _now()
    lock_user(db, user_id, exclusive=True)
    conditions = [AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)]
    if keep is not None:
        conditions.append(AuthSession.id != keep)
    ended = db.scalars(update(AuthSession).where(*conditions).values(revoked_at=now, revoked_reason=reason)
                       .returning(AuthSession.id)).all()
    if ended:
        _deny(db, AccessToken.session_id.in_(ended), now)
    return len(ended)


def revoke_access_tokens_of(db: Session, user_id: uuid.UUID, *, now: datetime | None = None) -> int:
    """Deny the user's unexpired access tokens, keeping the sessions: the next refresh issues
    a token with the memberships as they are now (a role change, a removal)."""
    now = now or _now()
    lock_user(db, user_id, exclusive=True)
    return _deny(db, AccessToken.user_id == user_id, now)


def _deny(db: Session, condition: Any, now: datetime) -> int:
    result = db.execute(update(AccessToken)
                        .where(condition, AccessToken.revoked_at.is_(None), AccessToken.expires_at > now)
                        .values(revoked_at=now).execution_options(synchronize_session=False))
    return result.rowcount


def access_token_revoked(db: Session, jti: str) -> bool:
    """The check of every request (a primary-key lookup)."""
    return db.scalar(select(AccessToken.revoked_at).where(AccessToken.jti == jti)) is not None


def purge_expired(db: Session, settings: Settings, now: datetime) -> int:
    """Delete what no longer authenticates or denies anything (periodic). A session is kept
    for an access token's lifetime after its end, for its denied tokens' sake."""
    longest_access = timedelta(seconds=settings.access_token_ttl_seconds)
    reuse_interval = timedelta(seconds=settings.refresh_token_reuse_interval_seconds)
    db.execute(update(RefreshToken).where(RefreshToken.successor_sealed.is_not(None),
                                          RefreshToken.used_at <= now - reuse_interval)
               .values(successor_sealed=None))
    deleted = db.execute(delete(AccessToken).where(AccessToken.expires_at <= now)).rowcount
    deleted += db.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now)).rowcount
    deleted += db.execute(delete(AuthSession).where(or_(AuthSession.expires_at <= now - longest_access,
                                                        AuthSession.revoked_at <= now - longest_access))).rowcount
    return deleted
