"""Signing and verifying EdDSA (Ed25519) JWTs. Anything else is rejected: alg none,
HMAC algorithms, unknown key ids, bad signatures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"


class TokenInvalid(Exception):
    """The token cannot be trusted; the message says why."""


def sign(claims: Mapping[str, Any], kid: str, private_key: Ed25519PrivateKey, *, typ: str = "JWT") -> str:
    return jwt.encode(dict(claims), private_key, algorithm=ALGORITHM, headers={"kid": kid, "typ": typ})


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
    if header.get("alg") != ALGORITHM:
        raise TokenInvalid(f"algorithm {header.get('alg')!r} is not accepted, only {ALGORITHM}")
    kid = header.get("kid")
    if not kid or kid not in keys:
        raise TokenInvalid(f"unknown or retired signing key {kid!r}")
    try:
        return jwt.decode(
            token,
            keys[kid],
            algorithms=[ALGORITHM],
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
