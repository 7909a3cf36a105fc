"""SQLAlchemy models of the platform database.

Tenant-scoped tables carry ``tenant_id`` and are protected by PostgreSQL row-level
security (see the initial migration); the application sets the scope per transaction
(``api.db.session``).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


class TenantStatus(enum.StrEnum):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    FAILED = "FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class OperationKind(enum.StrEnum):
    SIGNUP = "signup"
    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    CHANGE_TIER = "change_tier"
    DELETE = "delete"
    DRIFT_CORRECTION = "drift_correction"
    LICENSE_RENEWAL = "license_renewal"


class OperationStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    AWAITING_CAPACITY = "AWAITING_CAPACITY"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (OperationStatus.SUCCEEDED, OperationStatus.FAILED)


UNFINISHED_OPERATION_STATUSES = tuple(s for s in OperationStatus if not s.finished)


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"


class KeyPurpose(enum.StrEnum):
    ACCESS = "access"
    LICENSE = "license"
    AUDIT = "audit"  # the audit chain's checkpoints


class LicenseStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


def _enum_check(column: str, values: type[enum.Enum]) -> str:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.PENDING)
    placement: Mapped[str] = mapped_column(String(128))
    billing_customer_id: Mapped[str | None] = mapped_column(String(128))
    billing_subscription_id: Mapped[str | None] = mapped_column(String(128))
    # The subscription's status as Stripe last reported it (create answer or webhook), and
    # the creation time of the event that said so (older events never overwrite it).
    billing_status: Mapped[str | None] = mapped_column(String(24))
    billing_status_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by invoice.payment_failed, cleared by invoice.paid: the grace period runs from here.
    payment_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Suspended for non-payment (only a payment lifts it, not the owner's reactivate).
    billing_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # A committed tier's usage went above the commitment (an alert, never a charge).
    usage_overage_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(String(200))
    platform_role: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now_column()
    scrubbed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now_column()


class SigningKey(Base):
    """The public half of a signing key from before transit signing (migration 0006): it
    verifies what it signed until retired. New keys live only in the secrets server."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(16), default="EdDSA")
    public_key_pem: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.RETIRING)
    created_at: Mapped[datetime] = _now_column()
    retiring_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class License(Base):
    __tablename__ = "licenses"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    operation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operations.id"))
    kid: Mapped[str] = mapped_column(String(64))  # a transit key version, or a legacy key
    tier: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Operation(Base):
    __tablename__ = "operations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default=OperationStatus.PENDING)
    current_step: Mapped[str | None] = mapped_column(String(32))
    steps: Mapped[list[Any]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StackEvent(Base):
    __tablename__ = "stack_events"
    __table_args__ = (Index("ix_stack_events_operation", "operation_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    operation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operations.id"))
    step: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _now_column()


class AuditRecord(Base):
    """One append-only, hash-chained audit entry. No FK to tenants: it outlives them."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(80))
    tenant_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(80))
    resource: Mapped[str] = mapped_column(String(300))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class BillingCatalogItem(Base):
    """A Stripe object the tier catalog declares (meter, product, price), as last synced."""

    __tablename__ = "billing_catalog"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    stripe_id: Mapped[str] = mapped_column(String(255))
    # Hash of the declared content: a change (a new amount) makes sync create a new price.
    fingerprint: Mapped[str] = mapped_column(String(64))
    synced_at: Mapped[datetime] = _now_column()


class BillingEvent(Base):
    """Each Stripe webhook event handled, once: a replay of its id is a no-op."""

    __tablename__ = "billing_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(80))
    tenant_id: Mapped[uuid.UUID | None]
    stripe_created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = _now_column()
    outcome: Mapped[str] = mapped_column(Text)


class UsageSample(Base):
    """One observation of a usage dimension: a reservation seen by the collector (an
    instantaneous amount) or a tenant server's report (an amount used)."""

    __tablename__ = "usage_samples"
    __table_args__ = (
        UniqueConstraint("tenant_id", "dimension", "source", "sample_key"),
        Index("ix_usage_samples_hour", "hour", "tenant_id", "dimension"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    dimension: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    sample_key: Mapped[str] = mapped_column(String(120))
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sampled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    value: Mapped[Any] = mapped_column(Numeric(24, 9))


class UsageHour(Base):
    """A tenant's usage of one dimension in one hour, and whether it was sent to Stripe."""

    __tablename__ = "usage_hours"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "dimension", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    dimension: Mapped[str] = mapped_column(String(32))
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quantity: Mapped[Any] = mapped_column(Numeric(24, 9))
    samples: Mapped[int] = mapped_column(BigInteger)
    aggregated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    identifier: Mapped[str] = mapped_column(String(100), unique=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_value: Mapped[int | None] = mapped_column(BigInteger)


class DriftFinding(Base):
    """A stack the drift watcher saw drifted: open until it is back (`cleared_at`)."""

    __tablename__ = "drift_findings"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    stack: Mapped[str] = mapped_column(String(128), index=True)
    # None for a platform stack (shared-<cluster>): visible in the system scope only.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # [{resource, what, paths, detail}]: property paths, never values.
    findings: Mapped[list[Any]] = mapped_column(default=list)
    detected_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    correction_operation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operations.id"))


class DriftReportKind(enum.StrEnum):
    SCHEDULED = "scheduled"  # a `cameleer drift --all --json --report` run, stored by `python -m api.drift.import_report`
    ON_DEMAND = "on-demand"  # an operator's check, run by a worker (api.drift.on_demand)


class DriftReport(Base):
    """A cameleer.drift/v1 report, secret-looking values masked before it is stored
    (api.drift.store). Spans tenants: platform data without row-level security, for the
    system role only."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = _now_column()
    body: Mapped[dict[str, Any]]


class LoginAttemptKind(enum.StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


class SignupLimitKind(enum.StrEnum):
    """The signup counters kept in ``login_attempts`` (api.tenants.signup_limits)."""

    ADDRESS = "signup_address"
    DOMAIN = "signup_domain"
    USER = "signup_user"
    PENDING = "signup_pending"  # refusals for too many pending signups: audited once per window


class LoginAttempt(Base):
    """Recent counted attempts of one key, and until when it is locked out: failed logins of
    an account (its normalized email, existing or not) or a client address, and signups per
    address, email domain or user (``SignupLimitKind``; ``failures`` counts them). Read before
    authentication: not tenant data, no row-level security."""

    __tablename__ = "login_attempts"
    __table_args__ = (PrimaryKeyConstraint("kind", "key"),)

    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OneTimeLink(Base):
    """A mailed single-use link (api.auth.links): only the token's SHA-256 is kept. Read
    before anyone is authenticated: not tenant data, no row-level security."""

    __tablename__ = "one_time_links"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    purpose: Mapped[str] = mapped_column(String(32))
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PendingSignup(Base):
    """A signup waiting for its email to be verified: what it asked for (the password only as
    its hash), kept until it expires. ``account_exists``: the email already had an account, so
    no link was sent (the answer was the same). Not tenant data, no row-level security."""

    __tablename__ = "pending_signups"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320))
    email_domain: Mapped[str] = mapped_column(String(255))
    organization_name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63))
    tier: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(Text)
    account_exists: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthSession(Base):
    """A sign-in (api.auth.sessions): the family of refresh tokens rotated from one login.
    ``expires_at`` is its newest refresh token's expiry. Not tenant data, no row-level security."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    """One refresh token of a session: only its SHA-256 is kept; ``used_at`` once rotated, and
    then its successor sealed with a key only the token itself gives (api.auth.sessions)."""

    __tablename__ = "refresh_tokens"

    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    successor_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class AccessToken(Base):
    """An access token issued from a session, by ``jti``: ``revoked_at`` denies it on every
    request until it expires."""

    __tablename__ = "access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


CHECKS = {
    "tenants": ("status", TenantStatus),
    "operations": ("status", OperationStatus),
    "signing_keys": ("status", KeyStatus),
    "licenses": ("status", LicenseStatus),
}


class UsageCredential(Base):
    """Which tenant a usage key belongs to (one per tenant); its secret is in the tenant's KV path."""

    __tablename__ = "usage_credentials"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = _now_column()



class ClusterKind(enum.StrEnum):
    SHARED = "shared"
    DEDICATED = "dedicated"


class ClusterState(enum.StrEnum):
    ACTIVE = "active"
    CORDONED = "cordoned"  # receives no new tenant
    DRAINING = "draining"  # receives no new tenant; the ones there are to be moved away


CLUSTER_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"


class Cluster(Base):
    """A Kubernetes cluster tenants are placed on (api.clusters). Platform data: no
    row-level security. The kubeconfig is in OpenBao; ``credentials_ref`` names it."""

    __tablename__ = "clusters"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64))
    capacity_cpu_m: Mapped[int] = mapped_column(BigInteger)
    capacity_memory_mi: Mapped[int] = mapped_column(BigInteger)
    tenant_slots: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default=ClusterState.ACTIVE)
    credentials_ref: Mapped[str] = mapped_column(String(200))
    # shared-<name> for a shared cluster; dedicated-<slug> once a dedicated cluster has its tenant.
    baseline_stack: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
