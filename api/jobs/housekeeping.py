"""The hourly purge of rows that no longer count, lock, deny or open anything: login and
signup counters, expired pending signups, mailed links, ended sessions. Each purge runs in
its own transaction, so one that fails leaves the others done (the next hour retries it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from api.auth import links, sessions, throttle
from api.db.session import Scope
from api.services import Services
from api.tenants import signup_limits

log = logging.getLogger(__name__)

Purge = Callable[[Session, Services, datetime], int]

PURGES: dict[str, Purge] = {
    "login_attempts": lambda session, services, now: throttle.purge_expired(session, services.settings, now),
    "pending_signups": lambda session, services, now: signup_limits.purge_expired(session, services.settings, now),
    "one_time_links": lambda session, _services, now: links.purge(session, now=now),
    "auth_sessions": lambda session, services, now: sessions.purge_expired(session, services.settings, now),
}


def purge_expired_rows(services: Services, now: datetime | None = None) -> dict[str, int | str]:
    """Rows deleted per purge (or why it failed)."""
    now = now or datetime.now(UTC)
    deleted: dict[str, int | str] = {}
    for name, purge in PURGES.items():
        try:
            with services.db.transaction(Scope.system()) as session:
                deleted[name] = purge(session, services, now)
        except Exception as exc:  # noqa: BLE001 - the other purges still run; retried next hour
            log.warning("purge of %s failed (%s); retried next hour", name, type(exc).__name__)
            deleted[name] = f"failed ({type(exc).__name__})"
    return deleted
