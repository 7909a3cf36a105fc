"""The mail transports: a local Maildir, or an SMTP relay."""

from __future__ import annotations

import logging
import mailbox
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from api.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, message: Message) -> None: ...


def _email(message: Message, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    email.set_content(message.body)
    return email


class MaildirMailer:
    """Delivers into a local Maildir (owner-only), for development, the demo and tests."""

    def __init__(self, path: Path, sender: str) -> None:
        self.path = path
        self.sender = sender

    def send(self, message: Message) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(self.path, create=True)  # new, tmp and cur, mode 0700
        os.chmod(self.path, 0o700)
        box.add(_email(message, self.sender))
        log.info("mail delivered to the local outbox", extra={"subject": message.subject})


class SmtpMailer:
    """Sends through an SMTP relay; STARTTLS whenever the relay offers it on ``smtp://``."""

    def __init__(self, url: str, sender: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender
        self.timeout = timeout

    def send(self, message: Message) -> None:
        context = ssl.create_default_context()
        if self.implicit_tls:
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if not self.implicit_tls and client.has_extn("starttls"):
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(_email(message, self.sender))
        log.info("mail sent", extra={"subject": message.subject, "relay": self.host})


def mailer_from_settings(settings: Settings) -> Mailer:
    url = settings.mail_url or (settings.data_dir / "outbox").resolve().as_uri().replace("file:", "maildir:", 1)
    scheme = urlsplit(url).scheme
    if scheme == "maildir":
        return MaildirMailer(Path(unquote(urlsplit(url).path)), settings.mail_sender)
    if scheme in ("smtp", "smtps"):
        return SmtpMailer(url, settings.mail_sender)
    raise ValueError(f"CAMELEER_MAIL_URL must be maildir://, smtp:// or smtps://, not {scheme}://")


def read_maildir(path: Path) -> list[mailbox.MaildirMessage]:
    """Every message in a Maildir, oldest first (for the demo and the tests)."""
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    return [message for _, message in sorted(box.iteritems(), key=lambda item: (item[1].get_date(), item[0]))]
