"""User accounts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.passwords import hash_password
from api.auth.roles import PlatformRole
from api.db.models import User


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalize_email(email), User.scrubbed_at.is_(None)))


def create_user(
    session: Session,
    email: str,
    password: str,
    *,
    display_name: str | None = None,
    platform_role: PlatformRole | None = None,
) -> User:
    return add_user(session, email, hash_password(password), display_name=display_name, platform_role=platform_role)


def add_user(
    session: Session,
    email: str,
    password_hash: str,
    *,
    display_name: str | None = None,
    platform_role: PlatformRole | None = None,
) -> User:
    """A user whose password was hashed earlier (a verified signup keeps only the hash)."""
    user = User(
        email=normalize_email(email),
        password_hash=password_hash,
        display_name=display_name,
        platform_role=platform_role.value if platform_role else None,
    )
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
