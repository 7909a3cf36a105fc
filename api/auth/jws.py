"""Ed25519 JWTs: the compact serialisation, and verification that rejects everything else
(alg none, HMAC algorithms, unknown key ids, bad signatures).

Tokens carry the fully-specified JWS algorithm ``Ed25519`` of RFC 9864; the polymorphic
``EdDSA`` that tokens issued before it carry still verifies during the transition.
Signing happens in the secrets server (``api.auth.signing``); ``sign`` here signs with a
key in hand, for tests and offline tools.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "Ed25519"
LEGACY_ALGORITHM = "EdDSA"
ACCEPTED_ALGORITHMS = (ALGORITHM, LEGACY_ALGORITHM)

# PyJWT 2.10 knows only the polymorphic name. Its OKP algorithm is exactly Ed25519 for an
# Ed25519 key, and every key this module verifies with is one (keys_from_jwks and the
# signer build nothing else). A PyJWT that learns the name keeps its own.
try:
    jwt.register_algorithm(ALGORITHM, OKPAlgorithm())
except ValueError:
    pass


class TokenInvalid(Exception):
    """The token cannot be trusted; the message says why."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact_json(members: Mapping[str, Any]) -> bytes:
    """A JOSE header or claims set as compact JSON, datetimes as NumericDate (seconds since
    the epoch)."""
    def numeric_date(value: Any) -> int:
        if isinstance(value, datetime):
            return int(value.timestamp())
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return json.dumps(dict(members), separators=(",", ":"), default=numeric_date).encode()


def signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    """``BASE64URL(header) . BASE64URL(payload)``: the bytes a JWS signature covers."""
    return f"{b64url(compact_json(header))}.{b64url(compact_json(claims))}".encode()


def sign(claims: Mapping[str, Any], kid: str, private_key: Ed25519PrivateKey, *, typ: str = "JWT") -> str:
    message = signing_input({"alg": ALGORITHM, "typ": typ, "kid": kid}, claims)
    return f"{message.decode()}.{b64url(private_key.sign(message))}"


def jwk(kid: str, public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid, "use": "sig", "alg": ALGORITHM}


def unverified_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"malformed token: {exc}") from exc


def verify(
    token: str,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    audience: str | None = None,
    issuer: str | None = None,
    verify_times: bool = True,
    required: tuple[str, ...] = ("exp", "iat"),
) -> dict[str, Any]:
    """Verify signature (and by default exp/nbf/iat against the clock) and return the claims.

    ``verify_times=False`` leaves time checks to the caller (license grace periods).
    """
    header = unverified_header(token)
    if header.get("alg") not in ACCEPTED_ALGORITHMS:
        raise TokenInvalid(f"algorithm {header.get('alg')!r} is not accepted, only {ALGORITHM}")
    kid = header.get("kid")
    if not kid or kid not in keys:
        raise TokenInvalid(f"unknown or retired signing key {kid!r}")
    try:
        return jwt.decode(
            token,
            keys[kid],
            algorithms=list(ACCEPTED_ALGORITHMS),
            audience=audience,
            issuer=issuer,
            options={
                "verify_exp": verify_times,
                "verify_nbf": verify_times,
                "verify_iat": verify_times,
                "verify_aud": audience is not None,
                "require": list(required),
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenInvalid("token has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenInvalid("signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise TokenInvalid(str(exc)) from exc
