"""The hourly purge of expired rows, against the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from api.auth import links
from api.auth.links import LinkPurpose
from api.db.models import OneTimeLink
from api.db.session import Scope
from api.jobs import housekeeping


def test_every_purge_runs_and_one_failing_purge_stops_no_other(services, monkeypatch) -> None:
    now = datetime.now(UTC)
    subject = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    with services.db.transaction(Scope.system()) as session:
        links.issue(session, LinkPurpose.INVITE, subject, ttl=timedelta(hours=1), now=now - timedelta(days=3))

    def broken(_session, _services, _now):
        raise RuntimeError("lock timeout")

    monkeypatch.setitem(housekeeping.PURGES, "login_attempts", broken)
    deleted = housekeeping.purge_expired_rows(services, now)

    assert deleted["login_attempts"] == "failed (RuntimeError)"
    assert set(deleted) == {"login_attempts", "pending_signups", "one_time_links", "auth_sessions"}
    assert all(isinstance(deleted[name], int) for name in deleted if name != "login_attempts")
    assert deleted["one_time_links"] >= 1
    with services.db.transaction(Scope.system()) as session:
        assert session.scalar(select(OneTimeLink).where(OneTimeLink.subject == subject)) is None
