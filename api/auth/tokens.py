"""Short-lived access tokens: who the user is and their roles, signed by the access-token
transit key (Ed25519). Each carries its ``jti`` and its sign-in session's id (``sid``),
by which it is revoked (``api.auth.sessions``); a token without them is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.jws import TokenInvalid, unverified_header, verify
from api.auth.keyring import KeyRing
from api.auth.roles import PlatformRole, TenantRole
from api.db.models import KeyPurpose, Membership, User

AUDIENCE = "cameleer-api"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    memberships: dict[uuid.UUID, TenantRole] = field(default_factory=dict)
    platform_roles: frozenset[PlatformRole] = frozenset()
    session_id: uuid.UUID | None = None
    token_id: str | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"

    def role_in(self, tenant_id: uuid.UUID) -> TenantRole | None:
        return self.memberships.get(tenant_id)

    def has_platform_role(self, roles: tuple[PlatformRole, ...]) -> bool:
        return bool(self.platform_roles.intersection(roles))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    jti: str
    expires_at: datetime


def principal_for(session: Session, user: User) -> Principal:
    rows = session.scalars(select(Membership).where(Membership.user_id == user.id))
    roles = frozenset([PlatformRole(user.platform_role)]) if user.platform_role else frozenset()
    return Principal(
        user_id=user.id,
        memberships={m.tenant_id: TenantRole(m.role) for m in rows},
        platform_roles=roles,
    )


def issue_access_token(
    keys: KeyRing, principal: Principal, session_id: uuid.UUID, *, issuer: str, ttl: int, now: datetime | None = None
) -> IssuedToken:
    now = now or datetime.now(UTC)
    jti = uuid.uuid4().hex
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": str(principal.user_id),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
        "jti": jti,
        "sid": str(session_id),
        "memberships": [{"tenant": str(t), "role": r.value} for t, r in principal.memberships.items()],
        "platform_roles": sorted(r.value for r in principal.platform_roles),
    }
    token = keys.sign(KeyPurpose.ACCESS, claims).token
    return IssuedToken(token=token, expires_in=ttl, jti=jti, expires_at=claims["exp"])


def principal_from_token(session: Session, keys: KeyRing, token: str, *, issuer: str) -> Principal:
    """Verify an access token; raises ``TokenInvalid``."""
    claims = verify(
        token,
        keys.verification_keys(session, KeyPurpose.ACCESS, kid=unverified_header(token).get("kid")),
        audience=AUDIENCE,
        issuer=issuer,
        required=("exp", "iat", "sub", "jti", "sid"),
    )
    try:
        return Principal(
            user_id=uuid.UUID(claims["sub"]),
            memberships={uuid.UUID(m["tenant"]): TenantRole(m["role"]) for m in claims.get("memberships", [])},
            platform_roles=frozenset(PlatformRole(r) for r in claims.get("platform_roles", [])),
            session_id=uuid.UUID(claims["sid"]),
            token_id=str(claims["jti"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenInvalid("malformed claims") from exc
