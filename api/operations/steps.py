"""The steps operations are made of. Each is idempotent: running it again after a crash
(or a retry) converges to the same state without creating anything twice.

A step gets a :class:`StepContext` and returns a small JSON-able result that is stored
in the operation's step record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from api import tenant_secrets
from api.audit.chain import AuditMeta, append
from api.billing import subscriptions
from api.billing.stripe_api import PAYABLE_STATUSES
from api.clusters import assign
from api.clusters.assign import placed_cluster
from api.clusters.placement import NoCluster
from api.db.models import (
    License,
    LicenseStatus,
    Membership,
    Operation,
    OperationKind,
    OperationStatus,
    Tenant,
    TenantStatus,
    User,
)
from api.db.session import Scope, ScopedSession
from api.licensing.issue import current_license, issue_license, license_for_operation
from api.operations.events import event_sink
from api.server_credential import store as server_credential
from api.services import Services
from api.stacks.driver import ChangeOrigin, MoveSource, TenantRef
from api.tiers import environments_of, tier_named


class StepNotReady(Exception):
    """The step's precondition is not met yet; retry later."""


class PermanentStepError(Exception):
    """Retrying cannot help (bad input, misconfiguration): fail the operation now."""


class OperationWaits(Exception):
    """The operation stops here, in ``status``, until something outside resumes it."""

    status: OperationStatus


class AwaitConfirmation(OperationWaits):
    """Until an operator confirms the previewed change."""

    status = OperationStatus.AWAITING_CONFIRMATION


class AwaitCapacity(OperationWaits):
    """Until a registered cluster can take the tenant (api.clusters.assign resumes it)."""

    status = OperationStatus.AWAITING_CAPACITY


class AwaitPayment(OperationWaits):
    """Until Stripe reports the subscription paid (the webhook resumes the operation)."""

    status = OperationStatus.AWAITING_PAYMENT


@dataclass
class StepContext:
    services: Services
    operation_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: OperationKind
    params: dict[str, Any]
    step: str

    @contextmanager
    def tx(self, scope: Scope | None = None) -> Iterator[ScopedSession]:
        with self.services.db.transaction(scope or Scope.tenant(self.tenant_id)) as session:
            yield session

    def tenant(self, session: ScopedSession) -> Tenant:
        tenant = session.get(Tenant, self.tenant_id)
        if tenant is None:
            raise PermanentStepError(f"tenant {self.tenant_id} does not exist")
        return tenant

    def target_tier(self, tenant: Tenant) -> str:
        return self.params.get("tier") or tenant.tier

    def target_placement(self, tenant: Tenant) -> str:
        return self.params.get("placement") or tenant.placement

    def target_ref(self, tenant: Tenant) -> TenantRef:
        return TenantRef(id=tenant.id, slug=tenant.slug, placement=self.target_placement(tenant))

    def events(self):
        return event_sink(self.services.db, self.tenant_id, self.operation_id, self.step)

    def origin(self) -> ChangeOrigin:
        """This operation, as the stack's history records it with each engine update."""
        return ChangeOrigin(self.operation_id, reason=self.params.get("reason"))


StepFunction = Callable[[StepContext], dict[str, Any]]
STEPS: dict[str, StepFunction] = {}


def step(name: str) -> Callable[[StepFunction], StepFunction]:
    def register(function: StepFunction) -> StepFunction:
        STEPS[name] = function
        return function

    return register


def _set_status(ctx: StepContext, status: TenantStatus, *, only_from: tuple[TenantStatus, ...] = ()) -> dict[str, Any]:
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        if not only_from or tenant.status in only_from:
            tenant.status = status.value
        return {"tenant_status": tenant.status}


@step("tenant_record")
def tenant_record(ctx: StepContext) -> dict[str, Any]:
    return _set_status(ctx, TenantStatus.PROVISIONING, only_from=(TenantStatus.PENDING, TenantStatus.FAILED))


@step("place")
def place_step(ctx: StepContext) -> dict[str, Any]:
    """Decide once where the tenant runs (a signup) or moves to (a tier change across
    placements), and store it: a resumed operation never moves again."""
    with ctx.tx(Scope.system()) as session:
        tenant = ctx.tenant(session)
        current = ctx.target_placement(tenant)
        if placed_cluster(current):
            return {"placement": current}
        choice = assign.place(session, ctx.target_tier(tenant), tenant.slug)
        if isinstance(choice, NoCluster):
            raise AwaitCapacity(choice.reason)
        if ctx.kind is OperationKind.SIGNUP:
            tenant.placement = choice
        else:
            _store_params(session, ctx, placement=choice)
        append(session, AuditMeta("control-plane", request_id=f"operation:{ctx.operation_id}"),
               "tenant.placed", f"tenant:{ctx.tenant_id}", tenant_id=ctx.tenant_id,
               details={"placement": choice, "tier": ctx.target_tier(tenant)})
        return {"placement": choice}


def _store_params(session: ScopedSession, ctx: StepContext, **params: Any) -> None:
    """Add to the operation's params, in the database and for the steps of this run."""
    operation = session.get(Operation, ctx.operation_id, with_for_update=True)
    operation.params = {**operation.params, **params}
    ctx.params.update(params)


def _owner_email(session: ScopedSession, tenant_id: uuid.UUID) -> str:
    query = (
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id, Membership.role == "owner")
        .limit(1)
    )
    return session.scalar(query) or ""


@step("billing")
def billing(ctx: StepContext) -> dict[str, Any]:
    stripe = ctx.services.billing
    if ctx.kind is OperationKind.DELETE:
        return subscriptions.cancel_for_delete(ctx.tx, stripe, ctx.tenant_id, ctx.operation_id)
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        tier, email, has_subscription = ctx.target_tier(tenant), _owner_email(session, tenant.id), tenant.billing_subscription_id
    if ctx.kind is OperationKind.CHANGE_TIER and has_subscription:
        if ctx.params.get("initiated_by") == "stripe":
            return {"subscription_id": has_subscription, "tier": tier, "changed_in": "stripe"}
        return subscriptions.change_tier(ctx.tx, stripe, ctx.tenant_id, ctx.operation_id, tier_name=tier)
    return subscriptions.ensure_subscription(ctx.tx, stripe, ctx.tenant_id, ctx.operation_id, tier_name=tier, email=email)


@step("payment")
def payment(ctx: StepContext) -> dict[str, Any]:
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        status = tenant.billing_status
    if status in PAYABLE_STATUSES:
        return {"billing_status": status}
    raise AwaitPayment(
        f"the subscription is {status or 'not created'}; the payment page confirms it with the client secret "
        f"from GET /v1/tenants/{ctx.tenant_id}/billing/payment, and Stripe's webhook resumes this operation"
    )


LICENSE_STATUS_FOR = {OperationKind.SUSPEND: LicenseStatus.SUSPENDED, OperationKind.DELETE: LicenseStatus.REVOKED}


@step("license")
def license_step(ctx: StepContext) -> dict[str, Any]:
    settings = ctx.services.settings
    with ctx.tx() as session:
        row = license_for_operation(session, ctx.operation_id)
        if row is None:
            tenant = ctx.tenant(session)
            row = issue_license(
                session,
                ctx.services.keys,
                tenant,
                tier_name=ctx.target_tier(tenant),
                status=LICENSE_STATUS_FOR.get(ctx.kind, LicenseStatus.ACTIVE),
                issuer=settings.issuer,
                ttl=timedelta(days=settings.license_ttl_days),
                operation_id=ctx.operation_id,
                now=ctx.services.clock(),
            )
        return {"license_id": str(row.id), "kid": row.kid, "status": row.status, "expires_at": row.expires_at.isoformat()}


@step("tenant_secrets")
def tenant_secrets_step(ctx: StepContext) -> dict[str, Any]:
    """The tenant's KV paths and who may read them, after its stack is up: the current
    license, the tenant server's credential (when it has none) and each environment's database
    credentials written, the server account of its environments granted on the auth mount of
    the cluster it runs on (or moves to); on delete (before the stack goes), everything removed."""
    if ctx.kind is OperationKind.DELETE:
        return _remove_tenant_secrets(ctx)
    vault = ctx.services.tenant_secrets
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        slug, environments = tenant.slug, environments_of(tier_named(ctx.target_tier(tenant)))
        license_row, ref = current_license(session, tenant.id), ctx.target_ref(tenant)
    if license_row is None:
        raise PermanentStepError("the tenant has no license to store")
    if (cluster := placed_cluster(ref.placement)) is None:
        raise PermanentStepError(f"the tenant has no cluster to grant its secrets on (placement {ref.placement!r})")
    try:
        access = vault.grant(slug, environments, cluster)
    except tenant_secrets.AuthMountMissing as error:
        raise PermanentStepError(str(error)) from None
    written = [tenant_secrets.LICENSE] if vault.write(
        slug, tenant_secrets.LICENSE, {"token": license_row.token, "kid": license_row.kid}) else []
    if _ensure_server_credential(ctx):
        written.append(tenant_secrets.USAGE_CREDENTIAL)
    for environment, credentials in ctx.services.driver.database_credentials(ref, environments).items():
        if vault.write(slug, tenant_secrets.database(environment), credentials):
            written.append(tenant_secrets.database(environment))
    removed = vault.remove_databases_except(slug, environments)
    return {"policy": access.policy, "role": access.role, "mount": access.mount, "namespaces": list(access.namespaces),
            "written": written, "removed": removed}


def _ensure_server_credential(ctx: StepContext) -> bool:
    with ctx.tx() as session:
        issued = server_credential.ensure(session, ctx.services.tenant_secrets, ctx.tenant(session))
        if issued is not None:
            append(session, AuditMeta("control-plane", request_id=f"operation:{ctx.operation_id}"),
                   "server_credential.issue", f"tenant:{ctx.tenant_id}", tenant_id=ctx.tenant_id,
                   details={"key_id": issued.key_id})
    return issued is not None


def _remove_tenant_secrets(ctx: StepContext) -> dict[str, Any]:
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        slug, cluster = tenant.slug, placed_cluster(tenant.placement)
    removed = ctx.services.tenant_secrets.remove(slug, cluster)
    if removed:
        with ctx.tx() as session:
            append(session, AuditMeta("control-plane", request_id=f"operation:{ctx.operation_id}"),
                   "operation.delete.secrets_removed", f"tenant:{ctx.tenant_id}", tenant_id=ctx.tenant_id,
                   details={"paths": removed})
    return {"removed": removed}


def _desired_stack(ctx: StepContext) -> tuple[TenantRef, str, License]:
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        license_row = current_license(session, tenant.id)
        if license_row is None:
            raise PermanentStepError("the tenant has no license to deploy")
        return ctx.target_ref(tenant), ctx.target_tier(tenant), license_row


@step("stack_up")
def stack_up(ctx: StepContext) -> dict[str, Any]:
    ref, tier, license_row = _desired_stack(ctx)
    moving_from = _move_source(ctx, ref, tier)
    result = ctx.services.driver.provision(
        ref,
        tier,
        environments_of(tier_named(tier)),
        license_row.token,
        ctx.kind is OperationKind.SUSPEND,
        ctx.events(),
        moving_from=moving_from,
        origin=ctx.origin(),
    )
    kept = sorted(moving_from.database_passwords) if moving_from else []
    return {"stack": result.stack, "summary": result.summary, "database_passwords_kept": kept}


def _move_source(ctx: StepContext, ref: TenantRef, tier: str) -> MoveSource | None:
    """On a move, the old placement and the passwords the tenant's servers use now (its KV
    paths, written from the old stack): the new stack takes the database roles over with
    them, so the old servers keep logging in until the switch. None for other operations."""
    moving_from = ctx.params.get("from_placement")
    if ctx.kind is not OperationKind.CHANGE_TIER or not moving_from or moving_from == ref.placement:
        return None
    kept = {}
    for environment in environments_of(tier_named(tier)):
        credentials = ctx.services.tenant_secrets.read(ref.slug, tenant_secrets.database(environment))
        if credentials and credentials.get("password"):
            kept[environment] = credentials["password"]
    return MoveSource(placement=moving_from, database_passwords=kept)


@step("drift_correct")
def drift_correct(ctx: StepContext) -> dict[str, Any]:
    with ctx.tx() as session:
        ref = ctx.target_ref(ctx.tenant(session))
    result = ctx.services.driver.correct_drift(ref, ctx.events(), origin=ctx.origin())
    return {"stack": result.stack, "summary": result.summary}


@step("preview")
def preview(ctx: StepContext) -> dict[str, Any]:
    ref, tier, license_row = _desired_stack(ctx)
    result = ctx.services.driver.preview(ref, tier, environments_of(tier_named(tier)), license_row.token, ctx.events())
    return {"stack": result.stack, "changes": result.changes, "policy_violations": result.policy_violations}


@step("confirm")
def confirm(ctx: StepContext) -> dict[str, Any]:
    if not ctx.params.get("confirmed_by"):
        raise AwaitConfirmation("review the preview step, then POST /v1/operations/{id}/confirm")
    return {"confirmed_by": ctx.params["confirmed_by"]}


@step("readiness")
def readiness(ctx: StepContext) -> dict[str, Any]:
    settings = ctx.services.settings
    with ctx.tx() as session:
        ref = ctx.target_ref(ctx.tenant(session))
    deadline = time.monotonic() + settings.readiness_timeout_seconds
    while True:
        state = ctx.services.driver.readiness(ref)
        if state.ready:
            return {"detail": state.detail}
        if time.monotonic() >= deadline:
            raise StepNotReady(f"tenant not ready after {settings.readiness_timeout_seconds:g}s: {state.detail}")
        time.sleep(settings.readiness_poll_seconds)


@step("activate")
def activate(ctx: StepContext) -> dict[str, Any]:
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        tenant.tier = ctx.target_tier(tenant)
        tenant.placement = ctx.target_placement(tenant)
        tenant.status = TenantStatus.ACTIVE.value
        tenant.failure_reason = None
        return {"tenant_status": tenant.status, "tier": tenant.tier, "placement": tenant.placement}


@step("mark_suspended")
def mark_suspended(ctx: StepContext) -> dict[str, Any]:
    return _set_status(ctx, TenantStatus.SUSPENDED)


@step("release_old_placement")
def release_old_placement(ctx: StepContext) -> dict[str, Any]:
    """After the move: the old stack destroyed, the tenant's role on the old cluster's auth
    mount removed (the tenant_secrets step granted the new one), the old cluster released."""
    with ctx.tx() as session:
        tenant = ctx.tenant(session)
        old = TenantRef(id=tenant.id, slug=tenant.slug, placement=ctx.params["from_placement"])
        new_cluster = placed_cluster(ctx.target_placement(tenant))
    ctx.services.driver.destroy(old, ctx.events(), origin=ctx.origin())
    role = _revoke_old_role(ctx, old, new_cluster)
    with ctx.tx(Scope.system()) as session:
        assign.release(session, old.slug, old.placement)
    return {"released": old.placement, "role_removed": role}


def _revoke_old_role(ctx: StepContext, old: TenantRef, new_cluster: str | None) -> str | None:
    old_cluster = placed_cluster(old.placement)
    if old_cluster is None or old_cluster == new_cluster:  # one mount, one role: the new grant
        return None
    role = ctx.services.tenant_secrets.revoke(old.slug, old_cluster)
    if role is not None:
        with ctx.tx() as session:
            append(session, AuditMeta("control-plane", request_id=f"operation:{ctx.operation_id}"),
                   "operation.move.secrets_role_removed", f"tenant:{ctx.tenant_id}", tenant_id=ctx.tenant_id,
                   details={"placement": old.placement, "role": role})
    return role


@step("mark_deleting")
def mark_deleting(ctx: StepContext) -> dict[str, Any]:
    return _set_status(ctx, TenantStatus.DELETING)


@step("stack_destroy")
def stack_destroy(ctx: StepContext) -> dict[str, Any]:
    with ctx.tx() as session:
        ref = ctx.target_ref(ctx.tenant(session))
    key = ctx.services.driver.destroy(ref, ctx.events(), origin=ctx.origin())
    if key is not None:  # crypto-shredding: copies of the stack's state are unreadable from now on
        with ctx.tx() as session:
            append(session, AuditMeta("control-plane", request_id=f"operation:{ctx.operation_id}"),
                   "operation.delete.crypto_shred", f"tenant:{ctx.tenant_id}", tenant_id=ctx.tenant_id,
                   details={"encryption_key": key})
    return {"destroyed": ref.placement, "encryption_key_destroyed": key}


def _scrub_user(user: User, now: datetime) -> None:
    user.email = f"scrubbed+{user.id.hex}@invalid"
    user.password_hash = "!"
    user.display_name = None
    user.scrubbed_at = now


@step("scrub")
def scrub(ctx: StepContext) -> dict[str, Any]:
    """Remove personal data; the audit log (which holds ids only) stays."""
    now = datetime.now(UTC)
    # System scope: whether a user belongs to other tenants is not visible from this one.
    with ctx.tx(Scope.system()) as session:
        members = session.scalars(select(Membership).where(Membership.tenant_id == ctx.tenant_id)).all()
        scrubbed = 0
        for membership in members:
            others = session.scalar(
                select(func.count()).where(Membership.user_id == membership.user_id, Membership.tenant_id != ctx.tenant_id)
            )
            user = session.get(User, membership.user_id)
            session.delete(membership)
            if user and not others and not user.platform_role and user.scrubbed_at is None:
                _scrub_user(user, now)
                scrubbed += 1
        tenant = ctx.tenant(session)
        tenant.name = "[deleted]"
        return {"memberships_removed": len(members), "users_scrubbed": scrubbed}


@step("mark_deleted")
def mark_deleted(ctx: StepContext) -> dict[str, Any]:
    with ctx.tx(Scope.system()) as session:
        tenant = ctx.tenant(session)
        assign.release(session, tenant.slug, tenant.placement)
        tenant.status = TenantStatus.DELETED.value
        tenant.deleted_at = tenant.deleted_at or datetime.now(UTC)
        return {"tenant_status": tenant.status}
