"""The signature header `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.

Stripe signs its webhooks this way (the SDK verifies those); usage reports from tenant
servers reuse the scheme with their own credential, and the local demo signs the events it
sends in Stripe's place with it.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and the v1 digests; ValueError when the header is not of this form."""
    pairs = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value.strip() for name, value in pairs if name.strip() == "t"]
    digests = [value.strip() for name, value in pairs if name.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not digests:
        raise ValueError("not t=<time>,v1=<hmac>")
    return int(stamps[0]), digests
