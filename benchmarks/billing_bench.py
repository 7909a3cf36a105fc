"""What metering and the Stripe webhook cost at fleet scale, next to their floors.

1. Aggregation: T tenants' cluster samples (CPU and RAM every 5 minutes, written through the
   collector's own `record_reservations`) until there are S samples, then the hourly
   aggregation (`metering.aggregate`) over all of them, once to write the hours and once
   more to prove it changes nothing; beside it, the bare `SELECT ... GROUP BY` of the same
   rows (the floor: the SQL with no upsert) on the same connection pool.
2. Webhooks: E signed `invoice.paid` events for those tenants POSTed to a real API process
   (`python -m api`, uvicorn) by C client threads, then the same E deliveries again
   (Stripe's retries: each a duplicate); beside them, `GET /healthz` at the same
   concurrency (the floor: the same server answering without work).

    source .cameleer/services.env
    .venv/bin/python benchmarks/billing_bench.py [--tenants 1000] [--samples 1000000] [--events 2000] [--threads 4]

Runs on a throwaway platform database (dropped at the end) and the local stripe-mock.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.billing import metering  # noqa: E402
from api.billing.metering import Reservation, hour_of  # noqa: E402
from api.db.models import Tenant, TenantStatus  # noqa: E402
from api.db.session import Scope  # noqa: E402
from api.services import Services  # noqa: E402
from tests.api.stripe_support import event, signed  # noqa: E402
from benchmarks.support import database_env, database_settings, percentile, start_api, throwaway_database  # noqa: E402

SLOT = timedelta(minutes=5)
SAMPLES_PER_SLOT = 2  # CPU cores and RAM GiB per tenant




def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


# --------------------------------------------------------------------------- set-up


def make_tenants(services: Services, count: int) -> list[Tenant]:
    tenants = [Tenant(slug=f"bench-{i:05d}", name=f"Bench {i}", tier="mid", status=TenantStatus.ACTIVE.value,
                      placement="shared:eu1", billing_customer_id=f"cus_bench{i:05d}", billing_status="active")
               for i in range(count)]
    with services.db.transaction(Scope.system()) as session:
        session.add_all(tenants)
    return tenants


def write_samples(services: Services, tenant_ids: list[uuid.UUID], total: int, end: datetime) -> tuple[int, float, datetime]:
    slots = max(1, total // (len(tenant_ids) * SAMPLES_PER_SLOT))
    start = end - slots * SLOT
    reservations = {tid: Reservation(cpu_cores=Decimal(1 + i % 8) / 4, ram_gib=Decimal(1 + i % 4) / 2)
                    for i, tid in enumerate(tenant_ids)}
    written, began = 0, time.perf_counter()
    for slot in range(slots):
        written += metering.record_reservations(services, reservations, start + slot * SLOT, tenant_ids)
    return written, time.perf_counter() - began, start


# --------------------------------------------------------------------------- 1. aggregation


GROUP_BY = text("SELECT tenant_id, dimension, hour, avg(value), count(*) FROM usage_samples "
                "WHERE hour >= :start AND hour < :end GROUP BY tenant_id, dimension, hour")


def bench_aggregation(services: Services, start: datetime, end: datetime) -> dict[str, float]:
    def bare() -> int:
        with services.db.transaction(Scope.system()) as session:
            return len(session.execute(GROUP_BY, {"start": hour_of(start), "end": hour_of(end) + timedelta(hours=1)}).all())

    window = (start, end + timedelta(hours=1))
    bare_s, groups = timed(bare)
    first_s, written = timed(metering.aggregate, services, *window)
    again_s, changed = timed(metering.aggregate, services, *window)
    bare_again_s, _ = timed(bare)
    return {"hour_rows": groups, "written": written, "changed_on_rerun": changed,
            "aggregate_first_s": first_s, "aggregate_rerun_s": again_s,
            "bare_group_by_s": min(bare_s, bare_again_s)}


# --------------------------------------------------------------------------- 2. webhooks




def drive(base: str, requests: list[tuple[str, bytes | None, dict[str, str]]], threads: int) -> dict[str, float]:
    """Send every request over `threads` keep-alive clients; rate and latency percentiles."""
    chunks = [requests[i::threads] for i in range(threads)]

    def run(chunk):
        latencies, statuses = [], []
        with httpx.Client(base_url=base, timeout=30) as client:
            for path, body, headers in chunk:
                began = time.perf_counter()
                response = (client.post(path, content=body, headers=headers) if body is not None
                            else client.get(path))
                latencies.append(time.perf_counter() - began)
                statuses.append(response.status_code)
        return latencies, statuses

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(run, chunks))
    wall = time.perf_counter() - began
    latencies = [x for lat, _ in results for x in lat]
    bad = sum(1 for _, statuses in results for s in statuses if s != 200)
    return {"per_s": len(latencies) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "non_200": bad}


def bench_webhooks(services: Services, base: str, customers: list[str], count: int, threads: int) -> dict[str, dict]:
    secret = services.settings.stripe_webhook_secret.get_secret_value()
    deliveries = []
    for i in range(count):
        payload = event("invoice.paid", {"object": "invoice", "id": f"in_bench{i}", "customer": customers[i % len(customers)],
                                         "status": "paid"})
        deliveries.append(("/v1/billing/webhook", payload, signed(payload, secret)))
    health = [("/healthz", None, {})] * count
    return {"healthz (floor)": drive(base, health, threads), "invoice.paid, first delivery": drive(base, deliveries, threads),
            "invoice.paid, redelivered (duplicate)": drive(base, deliveries, threads)}


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not (1 <= args.tenants <= 100_000 and 1 <= args.samples <= 10_000_000 and 1 <= args.events <= 100_000):
        parser.error("tenants 1..100000, samples 1..10000000, events 1..100000")

    with throwaway_database("cameleer_bench") as db:
        api = None
        try:
            webhook_secret = os.environ.get("CAMELEER_STRIPE_WEBHOOK_SECRET") or f"whsec_{secrets.token_hex(16)}"
            db_env = {**database_env(db), "CAMELEER_STRIPE_WEBHOOK_SECRET": webhook_secret}
            settings = database_settings(db, stripe_webhook_secret=SecretStr(webhook_secret))
            services = Services.build(settings)
            tenants = make_tenants(services, args.tenants)
            end = hour_of(datetime.now(UTC))
            written, write_s, start = write_samples(services, [t.id for t in tenants], args.samples, end)
            print(f"samples: {written:,} for {args.tenants:,} tenants over {(end - start) / timedelta(hours=1):.1f} h, "
                  f"written by the collector's path in {write_s:.1f} s ({written / write_s:,.0f} rows/s)")
            aggregation = bench_aggregation(services, start, end)
            print(f"aggregation: {aggregation['hour_rows']:,} tenant-hours; first run {aggregation['aggregate_first_s']:.2f} s "
                  f"({aggregation['written']:,} rows written), re-run {aggregation['aggregate_rerun_s']:.2f} s "
                  f"({aggregation['changed_on_rerun']} changed); bare GROUP BY {aggregation['bare_group_by_s']:.2f} s "
                  f"(ratio {aggregation['aggregate_first_s'] / aggregation['bare_group_by_s']:.2f})")

            api, base = start_api(db_env)
            webhooks = bench_webhooks(services, base, [t.billing_customer_id for t in tenants], args.events, args.threads)
            print(f"webhooks: {args.events:,} requests over {args.threads} threads, one API process")
            for name, figures in webhooks.items():
                print(f"  {name:40s} {figures['per_s']:8.1f}/s  p50 {figures['p50_ms']:6.1f} ms  "
                      f"p99 {figures['p99_ms']:6.1f} ms  non-200: {figures['non_200']}")
            with services.db.transaction(Scope.system()) as session:
                recorded = session.scalar(text("SELECT count(*) FROM billing_events"))
            print(f"billing_events rows after both rounds: {recorded:,} (one per event id)")
            if args.json:
                args.json.write_text(json.dumps({"samples": written, "write_s": write_s, "aggregation": aggregation,
                                                 "webhooks": webhooks, "billing_events": recorded}, indent=2))
            services.db.dispose()
            return 0
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
