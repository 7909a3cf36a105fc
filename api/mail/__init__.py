"""Mail the service sends people (email verification, invitations, password resets).

Two transports, chosen by ``CAMELEER_MAIL_URL``:

* ``maildir:///path`` (the local default, ``$CAMELEER_DATA_DIR/outbox``): each message is
  delivered into a Maildir, the standard mailbox format that mail clients, ``mutt -f`` and
  Python's ``mailbox`` read. The local demo and the tests read their links from it.
* ``smtp://host:port`` / ``smtps://host:port`` (production): sent through an SMTP relay,
  with STARTTLS on ``smtp://`` when the relay offers it; user and password from the URL.

Messages carry links that act as credentials, so the outbox is created readable by its
owner only and a message's body is never logged.
"""

from api.mail.outbox import Mailer, Message, mailer_from_settings, read_maildir

__all__ = ["Mailer", "Message", "mailer_from_settings", "read_maildir"]
