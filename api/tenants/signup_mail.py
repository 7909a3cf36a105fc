"""The mails a signup sends: the verification link, or, for an email that already has an
account, a note saying so (the API answers both signups alike).

They name the organisation by its slug (letters, digits, hyphens), never by the free-text
name: anyone may sign up with anyone's address, and must not get to write prose into a mail
sent to it."""

from __future__ import annotations

from api.mail import Message
from api.settings import Settings

VERIFY_PATH = "/console/signup/verify"


def verification_link(settings: Settings, token: str) -> str:
    """The console page that confirms a signup (as POST /v1/signup/verify does). The token
    travels in the fragment, which browsers never send to a server, so no access log holds it."""
    return f"{settings.public_base_url.rstrip('/')}{VERIFY_PATH}#token={token}"


def verification_message(settings: Settings, email: str, slug: str, token: str) -> Message:
    hours = settings.signup_verification_ttl_seconds // 3600
    body = (
        f"Someone, hopefully you, signed up the organisation {slug!r} on Cameleer with this address.\n\n"
        f"Confirm the address to create it (the link works once, within {hours} hours):\n\n"
        f"{verification_link(settings, token)}\n\n"
        "If this was not you, ignore this mail: nothing is created without the confirmation.\n"
    )
    return Message(to=email, subject="Confirm your Cameleer signup", body=body)


def existing_account_message(settings: Settings, email: str, slug: str) -> Message:
    body = (
        f"Someone, hopefully you, tried to sign up the organisation {slug!r} on Cameleer with this "
        "address, which already has an account.\n\n"
        f"Sign in at {settings.public_base_url.rstrip('/')} instead; once signed in, you can create another "
        "organisation from your account (POST /v1/organizations).\n\n"
        "If this was not you, ignore this mail: nothing was changed.\n"
    )
    return Message(to=email, subject="You already have a Cameleer account", body=body)
