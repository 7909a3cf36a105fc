"""Usage metering: samples in, hourly aggregates, Stripe meter events out.

Three stages, each idempotent and run from the job queue's periodic tasks:

1. **collect** (every ``metering_interval_seconds``): per cluster, one namespace list and
   one pod list (Running pods only); each tenant's CPU and memory *requests* are summed
   into one sample per dimension, keyed by the sampling slot, so a second run in the same
   slot replaces nothing. Tenant servers add ``gb_ingested`` samples through the signed
   usage-report endpoint (keyed by their report id).
2. **aggregate** (hourly): per tenant, dimension and hour, reservations become the mean
   of the hour's samples x 1 hour (a missed sample does not bill zero), reports their sum.
   Re-running an hour writes the same numbers; an hour already sent is never rewritten
   (``reconcile`` lists a late difference instead).
3. **report** (hourly): each complete, unsent hour of a metered tier becomes one meter
   event whose identifier is derived from tenant, dimension and hour (Stripe keeps one
   event per identifier), and is marked sent. Committed tiers are not sent: their usage
   above the commitment raises an overage alert instead.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from components.catalog import TIERS, CommittedPricing, MeteredPricing, UsageDimension, get_tier
from components.naming import TENANT_LABEL
from sqlalchemy import and_, func, select, text
from sqlalchemy.dialects.postgresql import insert

from api.audit.chain import AuditMeta, append
from api.billing.catalog import UNITS_PER, meter_event_name
from api.billing.stripe_api import StripeBilling
from api.clusters.assign import placed_cluster
from api.db.models import Tenant, TenantStatus, UsageHour, UsageSample
from api.db.session import Scope, ScopedSession
from api.metrics import METER_EVENTS_SENT, METERING_LAST_SAMPLE, METERING_SILENT, USAGE_OVERAGE
from api.services import Services

log = logging.getLogger(__name__)
RESERVATIONS = (UsageDimension.CPU_CORE_HOURS, UsageDimension.RAM_GB_HOURS)
SOURCE_CLUSTER = "cluster"
SOURCE_REPORT = "report"
GIB = Decimal(1024**3)
METERED_TIERS = tuple(name for name, tier in TIERS.items() if isinstance(tier.billing, MeteredPricing))


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------- collect


@dataclass(frozen=True)
class Reservation:
    cpu_cores: Decimal = Decimal(0)
    ram_gib: Decimal = Decimal(0)

    def __add__(self, other: Reservation) -> Reservation:
        return Reservation(self.cpu_cores + other.cpu_cores, self.ram_gib + other.ram_gib)


def _pod_requests(pod) -> Reservation:
    from kubernetes.utils import parse_quantity

    total = Reservation()
    for container in pod.spec.containers or ():
        requests = (container.resources and container.resources.requests) or {}
        total += Reservation(parse_quantity(requests.get("cpu", "0")), parse_quantity(requests.get("memory", "0")) / GIB)
    return total


def read_reservations(api_client) -> dict[str, Reservation]:
    """tenant slug -> what its Running pods request, on one cluster, in two list calls."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    owner_of = {
        ns.metadata.name: ns.metadata.labels[TENANT_LABEL]
        for ns in core.list_namespace(label_selector=TENANT_LABEL).items
    }
    reserved: dict[str, Reservation] = defaultdict(Reservation)
    for pod in core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items:
        slug = owner_of.get(pod.metadata.namespace)
        if slug is not None:
            reserved[slug] += _pod_requests(pod)
    return dict(reserved)


def record_reservations(
    services: Services, reservations: dict[uuid.UUID, Reservation], sampled_at: datetime, tenants: Iterable[uuid.UUID]
) -> int:
    """One sample per tenant and reservation dimension for this sampling slot; tenants with
    no running pod get a zero sample (so the hour's mean counts the time they ran nothing)."""
    interval = services.settings.metering_interval_seconds
    slot = int(sampled_at.timestamp()) // interval * interval
    rows = []
    for tenant_id in tenants:
        reservation = reservations.get(tenant_id, Reservation())
        for dimension, value in zip(RESERVATIONS, (reservation.cpu_cores, reservation.ram_gib), strict=True):
            rows.append({"tenant_id": tenant_id, "dimension": dimension.value, "source": SOURCE_CLUSTER,
                         "sample_key": f"slot:{slot}", "hour": hour_of(sampled_at), "sampled_at": sampled_at, "value": value})
    if rows:
        with services.db.transaction(Scope.system()) as session:
            session.execute(insert(UsageSample).values(rows).on_conflict_do_nothing())
    METERING_LAST_SAMPLE.set(sampled_at.timestamp())
    return len(rows)


def collect(services: Services, client_for_cluster: Callable[[str], object], now: datetime | None = None) -> int:
    """Sample every running tenant's reservations on every cluster it runs on."""
    now = now or datetime.now(UTC)
    with services.db.transaction(Scope.system()) as session:
        tenants = session.execute(
            select(Tenant.id, Tenant.slug, Tenant.placement).where(
                Tenant.status.in_([TenantStatus.ACTIVE.value, TenantStatus.SUSPENDED.value])
            )
        ).all()
    by_cluster: dict[str, dict[str, uuid.UUID]] = defaultdict(dict)
    for tenant_id, slug, placement in tenants:
        if cluster := placed_cluster(placement):
            by_cluster[cluster][slug] = tenant_id
    written = 0
    for cluster, ids_by_slug in by_cluster.items():
        reserved = read_reservations(client_for_cluster(cluster))
        reservations = {ids_by_slug[slug]: r for slug, r in reserved.items() if slug in ids_by_slug}
        written += record_reservations(services, reservations, now, ids_by_slug.values())
    return written


def record_report(session: ScopedSession, tenant_id: uuid.UUID, *, report_id: str, ingested_bytes: int, at: datetime) -> bool:
    """A tenant server's usage report, in the caller's transaction; False when this report id
    was recorded before."""
    row = {"tenant_id": tenant_id, "dimension": UsageDimension.GB_INGESTED.value, "source": SOURCE_REPORT,
           "sample_key": f"report:{report_id}", "hour": hour_of(at), "sampled_at": at,
           "value": Decimal(ingested_bytes) / Decimal(10**9)}
    inserted = session.execute(insert(UsageSample).values(row).on_conflict_do_nothing().returning(UsageSample.id)).first()
    return inserted is not None


# --------------------------------------------------------------------------- aggregate

# Reservations: mean of the hour's samples (x 1 h); reports: their sum. One statement for
# every tenant and dimension of the hour; an hour already sent to Stripe is left as it was.
_AGGREGATE = text("""
    INSERT INTO usage_hours (tenant_id, dimension, hour, quantity, samples, aggregated_at, identifier)
    SELECT tenant_id, dimension, hour,
           CASE WHEN dimension = :ingested THEN sum(value) ELSE avg(value) END,
           count(*), :now,
           'cam-' || replace(tenant_id::text, '-', '') || '-' || dimension || '-' || to_char(hour AT TIME ZONE 'UTC', 'YYYYMMDDHH24')
    FROM usage_samples
    WHERE hour >= :start AND hour < :end
    GROUP BY tenant_id, dimension, hour
    ON CONFLICT (tenant_id, dimension, hour) DO UPDATE
        SET quantity = EXCLUDED.quantity, samples = EXCLUDED.samples, aggregated_at = EXCLUDED.aggregated_at
        WHERE usage_hours.sent_at IS NULL
          AND (usage_hours.quantity, usage_hours.samples) IS DISTINCT FROM (EXCLUDED.quantity, EXCLUDED.samples)
""")


def aggregate(services: Services, start: datetime, end: datetime, now: datetime | None = None) -> int:
    """Aggregate the hours in [start, end); returns the number of hourly rows written or changed."""
    now = now or datetime.now(UTC)
    with services.db.transaction(Scope.system()) as session:
        result = session.execute(_AGGREGATE, {"ingested": UsageDimension.GB_INGESTED.value, "now": now,
                                              "start": hour_of(start), "end": hour_of(end)})
        changed = result.rowcount
        flag_overage(session, hour_of(start), hour_of(end), now)
    return changed


def flag_overage(session, start: datetime, end: datetime, now: datetime) -> list[uuid.UUID]:
    """Committed tenants whose hourly reservations went above their commitment."""
    flagged = []
    rows = session.execute(
        select(UsageHour.tenant_id, Tenant.tier, UsageHour.dimension, func.max(UsageHour.quantity))
        .join(Tenant, Tenant.id == UsageHour.tenant_id)
        .where(UsageHour.hour >= start, UsageHour.hour < end, Tenant.tier.not_in(METERED_TIERS),
               UsageHour.dimension.in_([d.value for d in RESERVATIONS]))
        .group_by(UsageHour.tenant_id, Tenant.tier, UsageHour.dimension)
    ).all()
    for tenant_id, tier_name, dimension, peak in rows:
        billing = get_tier(tier_name).billing
        assert isinstance(billing, CommittedPricing)
        committed = (Decimal(billing.minimum.cpu_m) / 1000 if dimension == UsageDimension.CPU_CORE_HOURS.value
                     else Decimal(billing.minimum.memory_mi) / 1024)
        tenant = session.get(Tenant, tenant_id)
        if peak > committed and tenant.usage_overage_at is None:
            tenant.usage_overage_at = now
            USAGE_OVERAGE.labels(tier_name, dimension).inc()
            append(session, AuditMeta("metering"), "billing.overage", f"tenant:{tenant_id}", tenant_id=tenant_id,
                   details={"dimension": dimension, "peak": str(peak), "committed": str(committed)})
            flagged.append(tenant_id)
    return flagged


# --------------------------------------------------------------------------- report


def meter_value(quantity: Decimal) -> int:
    return int((Decimal(quantity) * UNITS_PER).to_integral_value())


def report(services: Services, billing: StripeBilling, now: datetime | None = None) -> int:
    """Send every complete, unsent hour of a metered tenant; returns how many were sent."""
    now = now or datetime.now(UTC)
    pending = (
        select(UsageHour, Tenant.billing_customer_id)
        .join(Tenant, Tenant.id == UsageHour.tenant_id)
        .where(and_(UsageHour.sent_at.is_(None), UsageHour.hour < hour_of(now),
                    UsageHour.hour > now - timedelta(days=35), Tenant.tier.in_(METERED_TIERS),
                    Tenant.billing_customer_id.is_not(None)))
        .order_by(UsageHour.hour)
    )
    with services.db.transaction(Scope.system()) as session:
        hours = [(row.tenant_id, row.dimension, row.hour, row.quantity, row.identifier, customer_id)
                 for row, customer_id in session.execute(pending).all()]
    # No transaction is held over a call to Stripe; the meter event's identifier makes a
    # resend after a crash between the call and the commit a no-op on Stripe's side.
    for tenant_id, dimension, hour, quantity, identifier, customer_id in hours:
        value = meter_value(quantity)
        billing.send_meter_event(event_name=meter_event_name(UsageDimension(dimension)), customer_id=customer_id,
                                 value=value, identifier=identifier, timestamp=hour)
        with services.db.transaction(Scope.system()) as session:
            row = session.get(UsageHour, (tenant_id, dimension, hour), with_for_update=True)
            row.sent_at, row.sent_value = datetime.now(UTC), value
        METER_EVENTS_SENT.labels(dimension).inc()
    return len(hours)


# --------------------------------------------------------------------------- reconcile


@dataclass(frozen=True)
class Difference:
    tenant_id: uuid.UUID
    dimension: str
    hour: datetime
    recorded: int
    sent: int | None
    reason: str


def reconcile(services: Services, start: datetime, end: datetime, now: datetime | None = None) -> list[Difference]:
    """Hours whose platform record differs from what Stripe was sent: not sent although
    complete, or samples that arrived after the hour was sent."""
    now = now or datetime.now(UTC)
    recomputed = (
        select(UsageSample.tenant_id, UsageSample.dimension, UsageSample.hour,
               func.sum(UsageSample.value).label("total"), func.avg(UsageSample.value).label("mean"))
        .where(UsageSample.hour >= hour_of(start), UsageSample.hour < hour_of(end))
        .group_by(UsageSample.tenant_id, UsageSample.dimension, UsageSample.hour)
        .subquery()
    )
    query = (
        select(recomputed, UsageHour.sent_value, Tenant.tier)
        .join(Tenant, Tenant.id == recomputed.c.tenant_id)
        .outerjoin(UsageHour, and_(UsageHour.tenant_id == recomputed.c.tenant_id, UsageHour.dimension == recomputed.c.dimension,
                                   UsageHour.hour == recomputed.c.hour))
        .where(Tenant.tier.in_(METERED_TIERS))
        .order_by(recomputed.c.hour)
    )
    differences = []
    with services.db.transaction(Scope.system()) as session:
        for row in session.execute(query):
            quantity = row.total if row.dimension == UsageDimension.GB_INGESTED.value else row.mean
            recorded = meter_value(quantity)
            if row.sent_value is None and row.hour < hour_of(now):
                differences.append(Difference(row.tenant_id, row.dimension, row.hour, recorded, None, "not sent"))
            elif row.sent_value is not None and row.sent_value != recorded:
                differences.append(Difference(row.tenant_id, row.dimension, row.hour, recorded, row.sent_value,
                                              "samples arrived after the hour was sent"))
    return differences


def kube_client_for_cluster(cluster: str):
    from automation.readiness import api_client
    from stacks.clusters import kubeconfig_content

    return api_client(kubeconfig_content(cluster))


def run_hourly(services: Services, now: datetime | None = None) -> int:
    """Aggregate the last day's hours (late samples included) and send the complete ones."""
    now = now or datetime.now(UTC)
    aggregate(services, now - timedelta(days=1), now + timedelta(hours=1), now)
    METERING_SILENT.set(1 if pipeline_silent(services, now) else 0)
    return report(services, services.billing, now)


def pipeline_silent(services: Services, now: datetime | None = None) -> bool:
    """No sample for longer than ``metering_silent_after_seconds`` while tenants run."""
    now = now or datetime.now(UTC)
    with services.db.transaction(Scope.system()) as session:
        running = session.scalar(select(func.count()).select_from(Tenant).where(Tenant.status == TenantStatus.ACTIVE.value))
        latest = session.scalar(select(func.max(UsageSample.sampled_at)).where(UsageSample.source == SOURCE_CLUSTER))
    if not running:
        return False
    return latest is None or (now - latest).total_seconds() > services.settings.metering_silent_after_seconds
