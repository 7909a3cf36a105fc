"""Login throttling: failed logins counted per account and per client address, in
PostgreSQL so that every API process shares the counts, and temporary lockouts.

The account key is the normalized email whether or not such a user exists, so a locked or
throttled answer never tells which accounts exist. Counting takes the row's lock
(``SELECT ... FOR UPDATE`` after an insert that ignores an existing row), so concurrent
failures are all counted and a lockout is decided, and audited, once.

A login counts its attempt before its password is checked (``count_attempt``, a short
transaction of its own), so concurrent logins see each other's attempts and one key gets at
most its maximum of password checks per window; the check itself runs outside the rows'
locks (logins from one address are not serialized behind a password hash). A successful
login takes its attempt back (``take_back``) in the transaction of what the right password
does (``right_password``), and in one of its own should that transaction fail: only failures
count.

The counting (``locked_row``, ``count_failure``, ``purge_counters``) is not specific to
logins: the signup limits (api.tenants.signup_limits) count their keys in the same table.

The address is the TCP peer (``request.client.host``). Behind a reverse proxy that is the
proxy, and every client shares one budget: honouring X-Forwarded-For needs a list of
trusted proxies (the header is never trusted on its own), which this service does not have.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.audit.chain import AuditMeta, append
from api.auth.users import normalize_email
from api.db.models import LoginAttempt, LoginAttemptKind
from api.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """``max_failures`` within ``window`` lock the key for ``lockout``."""

    max_failures: int
    window: timedelta
    lockout: timedelta


@dataclass(frozen=True)
class Lockout:
    """A key that has just been locked (to audit)."""

    kind: LoginAttemptKind
    key: str
    locked_until: datetime

    @property
    def resource(self) -> str:
        return f"{self.kind.value}:{self.key}"


@dataclass(frozen=True)
class Counted:
    """One login attempt counted on one key before its password was checked: the window it
    was counted in and the lock it set, what taking it back needs."""

    kind: LoginAttemptKind
    key: str
    window_started_at: datetime
    lockout: Lockout | None


@dataclass(frozen=True)
class Attempt:
    """A login attempt as counted: refused (``retry_after`` seconds) or counted on each key."""

    counted: tuple[Counted, ...] = ()
    retry_after: int | None = None

    @property
    def lockouts(self) -> list[Lockout]:
        return [counted.lockout for counted in self.counted if counted.lockout]


def limits(settings: Settings) -> dict[LoginAttemptKind, Limit]:
    return {
        LoginAttemptKind.ACCOUNT: Limit(settings.login_account_max_failures,
                                        timedelta(seconds=settings.login_account_window_seconds),
                                        timedelta(seconds=settings.login_account_lockout_seconds)),
        LoginAttemptKind.ADDRESS: Limit(settings.login_address_max_failures,
                                        timedelta(seconds=settings.login_address_window_seconds),
                                        timedelta(seconds=settings.login_address_lockout_seconds)),
    }


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class LoginThrottle:
    """The throttle of one login attempt: its account and address keys, at ``now``."""

    limits: dict[LoginAttemptKind, Limit]
    keys: dict[LoginAttemptKind, str]
    now: datetime

    @classmethod
    def of(cls, settings: Settings, email: str, address: str, now: datetime) -> LoginThrottle:
        keys = {LoginAttemptKind.ACCOUNT: normalize_email(email), LoginAttemptKind.ADDRESS: address}
        return cls(limits(settings), keys, now)

    def count_attempt(self, session: Session) -> Attempt:
        """Count a login attempt on both keys before its password is checked, under the rows'
        locks (account first); refused, counting nothing, while either key is locked. The
        attempt that reaches a maximum locks the key; its lockout is audited when its password
        turns out wrong (``audit_lockouts``) and undone when right (``take_back``)."""
        rows = {kind: locked_row(session, kind, key, self.now) for kind, key in self.keys.items()}
        ends = [row.locked_until for row in rows.values() if row.locked_until and row.locked_until > self.now]
        if ends:
            return Attempt(retry_after=max(1, math.ceil((max(ends) - self.now).total_seconds())))
        counted = []
        for kind, row in rows.items():
            limit = self.limits[kind]
            window = row.window_started_at if row.window_started_at > self.now - limit.window else self.now
            locks = count_failure(row, limit, self.now)
            counted.append(Counted(kind, row.key, window, Lockout(kind, row.key, row.locked_until) if locks else None))
        session.flush()
        return Attempt(tuple(counted))

    def take_back(self, session: Session, attempt: Attempt) -> None:
        """The attempt's password was right: forget the account's failures (never a lock set
        meanwhile by another attempt) and refund the attempt on the address, whose count holds
        failures only."""
        for counted in attempt.counted:
            row = session.scalars(_row_for_update(counted.kind, counted.key)).one_or_none()
            if row is None:
                continue
            own_lock = counted.lockout is not None and row.locked_until == counted.lockout.locked_until
            if not own_lock and row.locked_until is not None and row.locked_until > self.now:
                continue  # another attempt's lock stands, and counts what it counted
            if counted.kind is LoginAttemptKind.ACCOUNT:
                session.delete(row)
            elif own_lock:
                row.locked_until = None
                row.failures = self.limits[counted.kind].max_failures - 1
                row.window_started_at = counted.window_started_at
            elif row.window_started_at == counted.window_started_at and row.failures > 0:
                row.failures -= 1
        session.flush()

    @contextmanager
    def right_password(self, session: Session, attempt: Attempt) -> Iterator[None]:
        """The transaction of what a right password does (a session, a new password), which
        takes the attempt back. Should it fail (the secrets server cannot sign, the database
        drops the connection), the attempt is taken back in a transaction of its own: a right
        password never counts as a failure. Only a process that dies in between leaves it
        counted, one failure more that its window forgets."""
        try:
            with session.begin():
                self.take_back(session, attempt)
                yield
        except Exception:
            self._take_back_alone(session, attempt)
            raise

    def _take_back_alone(self, session: Session, attempt: Attempt) -> None:
        try:
            with session.begin():
                self.take_back(session, attempt)
        except SQLAlchemyError as exc:  # the database itself failed: the first error is the one to raise
            log.warning("a right password's login attempt stays counted: %s", type(exc).__name__)

    @staticmethod
    def audit_lockouts(session: Session, meta: AuditMeta, lockouts: list[Lockout]) -> None:
        """Audit each lockout a failure caused (never the password)."""
        for lockout in lockouts:
            append(session, meta, "auth.lockout", lockout.resource,
                   details={"kind": lockout.kind.value, "locked_until": lockout.locked_until.isoformat()})

    def record_failure(self, session: Session) -> list[Lockout]:
        """Count a failed login on both keys (account first: one lock order for everyone)."""
        locked = []
        for kind, key in self.keys.items():
            row = locked_row(session, kind, key, self.now)
            if count_failure(row, self.limits[kind], self.now):
                locked.append(Lockout(kind, key, row.locked_until))
        session.flush()
        return locked


def locked_row(session: Session, kind: enum.StrEnum, key: str, now: datetime) -> LoginAttempt:
    """The counter of ``kind``/``key``, created when missing, under its row lock."""
    _create_row(session, kind, key, now)
    return session.scalars(_row_for_update(kind, key)).one()


def row_unless_locked(session: Session, kind: enum.StrEnum, key: str, now: datetime) -> LoginAttempt | None:
    """Like ``locked_row``, but None instead of waiting while another transaction holds the
    row's lock: for a transaction that may already hold the audit chain's lock, which the
    holder of the row's lock may be waiting for."""
    _create_row(session, kind, key, now)
    return session.scalars(_row_for_update(kind, key, skip_locked=True)).one_or_none()


def _create_row(session: Session, kind: enum.StrEnum, key: str, now: datetime) -> None:
    session.execute(insert(LoginAttempt).values(kind=kind.value, key=key, failures=0, window_started_at=now)
                    .on_conflict_do_nothing(index_elements=["kind", "key"]))


def _row_for_update(kind: enum.StrEnum, key: str, *, skip_locked: bool = False):
    return (select(LoginAttempt).where(LoginAttempt.kind == kind.value, LoginAttempt.key == key)
            .with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True))


def count_failure(row: LoginAttempt, limit: Limit, now: datetime) -> bool:
    """Add one failure to ``row``; True when it locks the key. A locked key counts nothing
    more, and counting starts afresh when a lock ends."""
    if row.locked_until is not None and row.locked_until > now:
        return False
    if row.window_started_at <= now - limit.window:
        row.failures, row.window_started_at = 0, now
    row.failures += 1
    if row.failures < limit.max_failures:
        return False
    row.locked_until = now + limit.lockout
    row.failures, row.window_started_at = 0, row.locked_until
    return True


def purge_expired(session: Session, settings: Settings, now: datetime) -> int:
    """Delete the rows that no longer lock or count anything (periodic: unknown emails and
    addresses would otherwise pile up). Returns how many."""
    return purge_counters(session, limits(settings), now)


def purge_counters(session: Session, limits: Mapping[enum.StrEnum, Limit], now: datetime) -> int:
    """Delete the counters of these kinds whose window has passed and which lock nothing."""
    deleted = 0
    for kind, limit in limits.items():
        deleted += session.execute(delete(LoginAttempt).where(
            LoginAttempt.kind == kind.value,
            LoginAttempt.window_started_at <= now - limit.window,
            or_(LoginAttempt.locked_until.is_(None), LoginAttempt.locked_until <= now))).rowcount
    return deleted
