"""Stripe test helpers: webhook events signed as Stripe signs them, and an HTTP client that
records what the SDK sends (stripe-mock is stateless, so "exactly once" is counted here)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import stripe

from api.billing import signatures


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``t=<ts>,v1=<hex>``: HMAC-SHA256 of ``"<ts>.<payload>"`` with the endpoint secret (the
    Stripe SDK, not this code, verifies it in the service)."""
    return signatures.signature_header(secret, payload, timestamp)


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None) -> bytes:
    return json.dumps({
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "data": {"object": obj},
    }).encode()


def signed(payload: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    return {"Stripe-Signature": signature_header(payload, secret, timestamp), "Content-Type": "application/json"}


@dataclass(frozen=True)
class SentRequest:
    method: str
    path: str
    idempotency_key: str | None


class RecordingHTTPClient(stripe.RequestsClient):
    """The SDK's own requests client, keeping a journal of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[SentRequest] = []

    def request(self, method, url, headers, post_data=None):
        key = next((v for k, v in (headers or {}).items() if k.lower() == "idempotency-key"), None)
        self.sent.append(SentRequest(method.upper(), urlparse(url).path, key))
        return super().request(method, url, headers, post_data)

    def posts(self, path: str) -> list[SentRequest]:
        return [r for r in self.sent if r.method == "POST" and r.path == path]
