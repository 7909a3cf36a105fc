"""Mailed single-use links and the local outbox, against the real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from api.auth import links
from api.auth.links import LinkInvalid, LinkPurpose
from api.db.models import OneTimeLink
from api.db.session import Scope
from api.mail import Message, mailer_from_settings, read_maildir
from api.services import Services

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def _subject() -> str:
    return f"someone-{uuid.uuid4().hex[:8]}@example.com"


def test_a_link_works_once_and_only_its_hash_is_stored(services: Services) -> None:
    subject = _subject()
    with services.db.transaction(Scope.system()) as session:
        issued = links.issue(session, LinkPurpose.VERIFY_EMAIL, subject, ttl=timedelta(hours=1), payload={"a": 1}, now=NOW)
    with services.db.transaction(Scope.system()) as session:
        stored = session.scalars(select(OneTimeLink).where(OneTimeLink.subject == subject)).one()
        assert issued.token.encode() not in stored.token_sha256 and len(stored.token_sha256) == 32
        assert links.redeem(session, LinkPurpose.VERIFY_EMAIL, issued.token, now=NOW).payload == {"a": 1}
    with services.db.transaction(Scope.system()) as session, pytest.raises(LinkInvalid, match="already used"):
        links.redeem(session, LinkPurpose.VERIFY_EMAIL, issued.token, now=NOW)


@pytest.mark.parametrize(("purpose", "at", "reason"), [
    (LinkPurpose.RESET_PASSWORD, NOW, "unknown"),  # a verification link does not reset a password
    (LinkPurpose.VERIFY_EMAIL, NOW + timedelta(hours=1), "expired"),
])
def test_a_link_for_another_purpose_or_past_its_expiry_is_refused(services: Services, purpose, at, reason) -> None:
    with services.db.transaction(Scope.system()) as session:
        issued = links.issue(session, LinkPurpose.VERIFY_EMAIL, _subject(), ttl=timedelta(hours=1), now=NOW)
    with services.db.transaction(Scope.system()) as session, pytest.raises(LinkInvalid, match=reason):
        links.redeem(session, purpose, issued.token, now=at)
    with services.db.transaction(Scope.system()) as session:  # still usable for its purpose, in time
        links.redeem(session, LinkPurpose.VERIFY_EMAIL, issued.token, now=NOW)


def test_a_new_link_ends_the_earlier_one(services: Services) -> None:
    subject = _subject()
    with services.db.transaction(Scope.system()) as session:
        first = links.issue(session, LinkPurpose.RESET_PASSWORD, subject, ttl=timedelta(hours=1), now=NOW)
        second = links.issue(session, LinkPurpose.RESET_PASSWORD, subject, ttl=timedelta(hours=1), now=NOW)
    with services.db.transaction(Scope.system()) as session:
        with pytest.raises(LinkInvalid):
            links.redeem(session, LinkPurpose.RESET_PASSWORD, first.token, now=NOW)
    with services.db.transaction(Scope.system()) as session:
        links.redeem(session, LinkPurpose.RESET_PASSWORD, second.token, now=NOW)


def test_two_racing_redemptions_use_a_link_once(services: Services) -> None:
    with services.db.transaction(Scope.system()) as session:
        issued = links.issue(session, LinkPurpose.INVITE, _subject(), ttl=timedelta(hours=1))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def redeem() -> None:
        barrier.wait()
        try:
            with services.db.transaction(Scope.system()) as session:
                links.redeem(session, LinkPurpose.INVITE, issued.token)
            outcomes.append("used")
        except LinkInvalid as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already used", "used"]


def test_purge_keeps_live_links(services: Services) -> None:
    old, live = _subject(), _subject()
    with services.db.transaction(Scope.system()) as session:
        links.issue(session, LinkPurpose.INVITE, old, ttl=timedelta(hours=1), now=NOW - timedelta(days=3))
        links.issue(session, LinkPurpose.INVITE, live, ttl=timedelta(days=7), now=NOW - timedelta(days=3))
        links.purge(session, now=NOW)
        subjects = set(session.scalars(select(OneTimeLink.subject).where(OneTimeLink.subject.in_([old, live]))))
    assert subjects == {live}


def test_the_local_outbox_is_a_maildir_only_its_owner_reads(services: Services) -> None:
    mailer = mailer_from_settings(services.settings)
    mailer.send(Message(to="a@example.com", subject="Verify", body="https://example.test/v?token=x"))
    outbox = services.settings.data_dir / "outbox"
    assert (outbox.stat().st_mode & 0o777) == 0o700
    message = read_maildir(outbox)[-1]
    assert message["To"] == "a@example.com" and "token=x" in message.get_payload()


def test_an_unknown_mail_scheme_is_refused(services: Services) -> None:
    with pytest.raises(ValueError, match="maildir"):
        mailer_from_settings(services.settings.model_copy(update={"mail_url": "http://relay"}))
