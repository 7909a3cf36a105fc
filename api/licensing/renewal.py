"""License renewal: an active tenant's license re-issued ahead of its expiry, and delivered.

Every hour (api.jobs.tasks) each ACTIVE tenant whose current license expires within
``license_renewal_window_days`` gets the next one: the same tier and status, a new period
from now, audited as ``license.renewed``. The current license row is locked and the window
checked again before issuing, so a second run, or a second worker, finds nothing due; the
database holds one current license per tenant (migration 0010).

Only ACTIVE tenants: a suspended tenant runs no server (zero replicas), and its reactivation
issues a fresh license; tenants being provisioned or deleted get theirs from their operation.

Delivery. The tenant server reads its license from the stack's Secret (a mounted file), from
the tenant's KV path, and from ``GET /api/license/{tenant_id}`` with its credential. The
renewal writes the KV path after committing, and queues a ``license_renewal`` operation
(``stack_up``, ``tenant_secrets``) for the Secret: the Secret comes from the stack's
configuration, so a direct patch would be reverted as drift, while ``stack_up`` deploys the
current license through the engine and the kubelet refreshes the mounted file without a
restart. A tenant with an unfinished operation gets no second one; that operation's
``stack_up`` and ``tenant_secrets`` deploy the current license, i.e. the renewed one, unless
they already ran, in which case the KV path and the API still serve it.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from api import tenant_secrets
from api.audit.chain import AuditMeta, append
from api.db.models import License, LicenseStatus, OperationKind, Tenant, TenantStatus
from api.db.session import Scope, ScopedSession
from api.licensing.issue import issue_license
from api.operations.service import start_operation, unfinished_operation
from api.services import Services
from api.vault import SecretsUnavailable

log = logging.getLogger(__name__)
ACTOR = "license-renewal"


def due_tenants(session: ScopedSession, now: datetime, window: timedelta) -> list[uuid.UUID]:
    """ACTIVE tenants whose current license expires before ``now + window``."""
    query = (
        select(Tenant.id)
        .join(License, License.tenant_id == Tenant.id)
        .where(Tenant.status == TenantStatus.ACTIVE.value, License.superseded_at.is_(None),
               License.expires_at <= now + window)
        .order_by(License.expires_at)
    )
    return list(session.scalars(query))


def renew_due_licenses(services: Services, now: datetime | None = None) -> dict[str, str]:
    """Renew every due license; tenant id -> what happened."""
    now = now or services.clock()
    window = timedelta(days=services.settings.license_renewal_window_days)
    with services.db.transaction(Scope.system()) as session:
        due = due_tenants(session, now, window)
    return {str(tenant_id): _renew_or_report(services, tenant_id, now, window) for tenant_id in due}


def _renew_or_report(services: Services, tenant_id: uuid.UUID, now: datetime, window: timedelta) -> str:
    """One tenant's failure (its transaction rolled back, so still due) never stops the others'
    renewals; the next run tries it again."""
    try:
        return renew_tenant(services, tenant_id, now, window)
    except Exception as exc:  # noqa: BLE001 - reported per tenant, retried next run
        log.warning("license renewal of tenant %s failed (%s); retried next run", tenant_id, type(exc).__name__)
        return f"failed ({type(exc).__name__}); retried next run"


def renew_tenant(services: Services, tenant_id: uuid.UUID, now: datetime, window: timedelta) -> str:
    with services.db.transaction(Scope.tenant(tenant_id)) as session:
        tenant = session.get(Tenant, tenant_id)
        previous = session.scalar(select(License).where(License.tenant_id == tenant_id, License.superseded_at.is_(None))
                                  .with_for_update())
        if previous is None or previous.expires_at > now + window or tenant.status != TenantStatus.ACTIVE.value:
            return "not due"
        renewed = issue_license(
            session, services.keys, tenant, tier_name=previous.tier, status=LicenseStatus(previous.status),
            issuer=services.settings.issuer, ttl=timedelta(days=services.settings.license_ttl_days), now=now,
        )
        delivery = _queue_delivery(session, services, tenant_id, renewed)
        append(session, AuditMeta(ACTOR), "license.renewed", f"tenant:{tenant_id}", tenant_id=tenant_id,
               details={"license_id": str(renewed.id), "previous_license_id": str(previous.id),
                        "expires_at": renewed.expires_at.isoformat(), "delivery": delivery})
        slug, token, kid, expires_at = tenant.slug, renewed.token, renewed.kid, renewed.expires_at
    _write_kv(services, slug, token, kid)
    return f"renewed until {expires_at.isoformat()}; {delivery}"


def _queue_delivery(session: ScopedSession, services: Services, tenant_id: uuid.UUID, renewed: License) -> str:
    busy = unfinished_operation(session, tenant_id)
    if busy is not None:
        return f"stack update left to operation {busy.id} ({busy.kind}, {busy.status})"
    key = f"license-renewal:{renewed.id}"
    operation = start_operation(
        session, kind=OperationKind.LICENSE_RENEWAL, tenant_id=tenant_id, key=key,
        request_fingerprint=hashlib.sha256(key.encode()).hexdigest(), requested_by=ACTOR,
        params={"license_id": str(renewed.id)}, queue=services.settings.job_queue,
    )
    return f"stack update by operation {operation.id}"


def _write_kv(services: Services, slug: str, token: str, kid: str) -> None:
    """The KV path now, rather than when the operation's tenant_secrets step gets to it."""
    try:
        services.tenant_secrets.write(slug, tenant_secrets.LICENSE, {"token": token, "kid": kid})
    except SecretsUnavailable:
        log.warning("license renewal: the KV path of %s is written by its operation instead", slug)
