"""The counting rule of login throttling (api.auth.throttle.count_failure), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.auth.throttle import Limit, count_failure
from api.db.models import LoginAttempt

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = Limit(max_failures=3, window=timedelta(minutes=15), lockout=timedelta(minutes=10))


def _row(failures: int = 0, started: datetime = T0, locked_until: datetime | None = None) -> LoginAttempt:
    return LoginAttempt(kind="account", key="a@example.com", failures=failures, window_started_at=started,
                        locked_until=locked_until)


def test_the_last_allowed_failure_locks_for_the_lockout_and_counting_restarts_after_it():
    row = _row()
    assert [count_failure(row, LIMIT, T0 + timedelta(seconds=i)) for i in range(3)] == [False, False, True]
    assert row.locked_until == T0 + timedelta(seconds=2) + LIMIT.lockout
    assert row.failures == 0 and row.window_started_at == row.locked_until


def test_a_locked_key_counts_nothing_more():
    row = _row(locked_until=T0 + timedelta(minutes=5))
    assert count_failure(row, LIMIT, T0 + timedelta(minutes=1)) is False
    assert row.failures == 0 and row.locked_until == T0 + timedelta(minutes=5)


def test_failures_older_than_the_window_are_forgotten():
    row = _row(failures=2)
    assert count_failure(row, LIMIT, T0 + LIMIT.window) is False
    assert row.failures == 1 and row.window_started_at == T0 + LIMIT.window


def test_an_ended_lock_does_not_block_and_a_new_window_counts_from_one():
    row = _row(locked_until=T0, started=T0)
    later = T0 + timedelta(seconds=1)
    assert [count_failure(row, LIMIT, later) for _ in range(2)] == [False, False]
    assert row.failures == 2
