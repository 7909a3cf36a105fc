"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.problems import Problem

MIN_LENGTH = 12
_COMMON = {"password1234", "123456789012", "qwertyuiop12", "letmein12345", "changeme1234", "passwordpassword"}
_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0000")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def weak_password_reasons(password: str, *, email: str = "", slug: str = "") -> list[str]:
    """Why a password is too weak; empty when it is acceptable."""
    reasons = []
    if len(password) < MIN_LENGTH:
        reasons.append(f"must be at least {MIN_LENGTH} characters long")
    if len(set(password)) < 5:
        reasons.append("must use at least 5 different characters")
    lowered = password.lower()
    if lowered in _COMMON:
        reasons.append("is a commonly used password")
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in lowered:
        reasons.append("must not contain your email address")
    if len(slug) >= 4 and slug.lower() in lowered:
        reasons.append("must not contain the organisation slug")
    return reasons


def require_strong_password(password: str, *, email: str = "", slug: str = "") -> None:
    """A 422 ``/problems/weak-password`` listing the reasons, as signup answers."""
    reasons = weak_password_reasons(password, email=email, slug=slug)
    if reasons:
        raise Problem(422, "weak-password", "The password " + "; ".join(reasons) + ".", reasons=reasons)
