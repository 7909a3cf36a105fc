"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pydantic import Field

from api.problems import Problem

MIN_LENGTH = 12
_COMMON = {"password1234", "123456789012", "qwertyuiop12", "letmein12345", "changeme1234", "passwordpassword"}
MAX_LENGTH = 1024
RULES = (f"At least {MIN_LENGTH} characters, at least 5 of them different; not a commonly used password; not "
         "containing the local part of the account's email or the organisation's slug (when 4 characters or "
         "longer). A password that breaks a rule is a 422 `/problems/weak-password` listing `reasons`.")
# A password the server checks with `require_strong_password`: the schema states the rules, the
# check itself answers the clearer `/problems/weak-password` (a length below the minimum included).
NewPassword = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH, description=RULES,
                                   json_schema_extra={"minLength": MIN_LENGTH})]
# A password checked against a stored hash only (login, the current one): accounts made before
# the policy keep signing in.
ExistingPassword = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
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
