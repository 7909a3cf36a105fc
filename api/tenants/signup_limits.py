"""Signup limits: signups per client address, per email domain and per signed-in user,
counted in PostgreSQL (the counters of api.auth.throttle, so every API process shares
them), and a cap on unverified signups, in all and per email domain.

A key that reaches its maximum within its window is locked for one window: the request that
reaches it is still served, the next ones get a 429 with Retry-After, and a refused request
counts nothing. Each lock is audited once (``signup.rate_limited``); refused requests are not
audited one by one, so a flood leaves one record per key and window, not one per request.
Counting takes the rows' locks in one fixed order (address, domain, user), so concurrent
signups are all counted without deadlocks.

The pending cap counts rows without a lock: concurrent signups may pass it by a few, which
a cap that only bounds the table's growth allows. The address is the TCP peer, as for
logins (X-Forwarded-For is not trusted). The domain is the email's whole domain: a mail
provider's domain shares one budget, so raise ``CAMELEER_SIGNUP_DOMAIN_MAX`` where many
people sign up with the same provider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from api.audit.chain import AuditMeta, append
from api.auth.throttle import Limit, count_failure, locked_row, purge_counters, row_unless_locked
from api.auth.users import normalize_email
from api.db.models import LoginAttempt, PendingSignup, SignupLimitKind
from api.problems import Problem, too_many_requests
from api.settings import Settings

# The problem types of a refusal by these limits.
LIMIT_PROBLEMS = frozenset({"too-many-signups", "too-many-pending-signups", "signups-paused"})
COUNTING_ORDER = (SignupLimitKind.ADDRESS, SignupLimitKind.DOMAIN, SignupLimitKind.USER)
# A refusal for too many pending signups is audited at most once per key in this window.
PENDING_AUDIT_WINDOW = timedelta(hours=1)


def limits(settings: Settings) -> dict[SignupLimitKind, Limit]:
    def every(maximum: int, seconds: int) -> Limit:
        return Limit(maximum, timedelta(seconds=seconds), timedelta(seconds=seconds))

    return {
        SignupLimitKind.ADDRESS: every(settings.signup_address_max, settings.signup_address_window_seconds),
        SignupLimitKind.DOMAIN: every(settings.signup_domain_max, settings.signup_domain_window_seconds),
        SignupLimitKind.USER: every(settings.signup_user_max, settings.signup_user_window_seconds),
        SignupLimitKind.PENDING: Limit(1, PENDING_AUDIT_WINDOW, PENDING_AUDIT_WINDOW),
    }


def email_domain(email: str) -> str:
    return normalize_email(email).rpartition("@")[2]


def _seconds_until(end: datetime, now: datetime) -> int:
    return max(1, math.ceil((end - now).total_seconds()))


@dataclass(frozen=True)
class SignupLimits:
    """The limits of one signup request, at ``now``, audited as ``meta``."""

    settings: Settings
    meta: AuditMeta
    now: datetime

    def refusal_before_work(self, session: Session, keys: dict[SignupLimitKind, str], domain: str) -> Problem | None:
        """The answer a request will get whatever it holds (a key locked, too many pending),
        read before the request's expensive work (the password's hash): a flood from a locked
        address or domain then costs a read per request, not a hash. Counts nothing; ``admit``
        and ``pending_refusal`` decide again when the request is counted."""
        wanted = [(kind.value, key) for kind, key in keys.items()]
        ends = session.scalars(select(LoginAttempt.locked_until).where(
            tuple_(LoginAttempt.kind, LoginAttempt.key).in_(wanted), LoginAttempt.locked_until > self.now)).all()
        if ends:
            return too_many_requests("too-many-signups", "Too many signups from this address, email domain or "
                                     "account; try again later.", _seconds_until(max(ends), self.now))
        return self.pending_refusal(session, domain)

    def admit(self, session: Session, keys: dict[SignupLimitKind, str]) -> Problem | None:
        """Count this signup on each key, or the 429 to answer when a key is locked."""
        limits_ = limits(self.settings)
        rows = {kind: locked_row(session, kind, keys[kind], self.now) for kind in COUNTING_ORDER if kind in keys}
        locks = [row.locked_until for row in rows.values() if row.locked_until and row.locked_until > self.now]
        if locks:
            return too_many_requests("too-many-signups", "Too many signups from this address, email domain or "
                                     "account; try again later.", _seconds_until(max(locks), self.now))
        for kind, row in rows.items():
            if count_failure(row, limits_[kind], self.now):
                self._audit(session, f"{kind.value}:{row.key}", kind, row.locked_until)
        session.flush()
        return None

    def pending_refusal(self, session: Session, domain: str) -> Problem | None:
        """The answer when too many signups await verification (for this domain, or in all)."""
        unverified = (PendingSignup.verified_at.is_(None), PendingSignup.expires_at > self.now)
        domain_filter = (*unverified, PendingSignup.email_domain == domain)
        if self._count(session, domain_filter) >= self.settings.signup_pending_domain_max:
            self._audit_pending(session, f"domain:{domain}")
            return too_many_requests("too-many-pending-signups", "Too many signups with this email domain await "
                                     "verification; try again later.", self._until_one_expires(session, domain_filter))
        if self._count(session, unverified) >= self.settings.signup_pending_max:
            self._audit_pending(session, "all")
            return too_many_requests("signups-paused", "Too many signups await verification; new signups are "
                                     "paused, try again later.", self._until_one_expires(session, unverified))
        return None

    @staticmethod
    def _count(session: Session, where: tuple) -> int:
        return session.scalar(select(func.count()).select_from(PendingSignup).where(*where))

    def _until_one_expires(self, session: Session, where: tuple) -> int:
        oldest = session.scalar(select(func.min(PendingSignup.expires_at)).where(*where))
        return _seconds_until(oldest, self.now) if oldest else 1

    def _audit_pending(self, session: Session, key: str) -> None:
        # Skipped while another request holds the row: that one decides the hour's audit, and
        # waiting could deadlock (this transaction may hold the audit chain's lock already).
        row = row_unless_locked(session, SignupLimitKind.PENDING, key, self.now)
        if row is not None and count_failure(row, limits(self.settings)[SignupLimitKind.PENDING], self.now):
            self._audit(session, f"{SignupLimitKind.PENDING.value}:{key}", SignupLimitKind.PENDING, row.locked_until)

    def _audit(self, session: Session, resource: str, kind: SignupLimitKind, until: datetime) -> None:
        append(session, self.meta, "signup.rate_limited", resource, result="denied",
               details={"kind": kind.value, "until": until.isoformat()})


def purge_expired(session: Session, settings: Settings, now: datetime) -> int:
    """Delete expired pending signups and the signup counters that count or lock nothing."""
    deleted = session.execute(PendingSignup.__table__.delete().where(PendingSignup.expires_at <= now)).rowcount
    return deleted + purge_counters(session, limits(settings), now)
