"""Render time of the console's tenants list over a fleet, next to the JSON API's list.

A throwaway platform database gets T tenants (default 1,000), each with three operations
(the newest a success, one in twenty failed) and one in ten with an open drift finding. A
real API process (`python -m api`) serves them; an operator signs in through the console's
form. Each page is then fetched R times, one request at a time:

- the first page of the list, unfiltered;
- a search (`q=`) and a filter on the last operation's result (which must look at every tenant);
- the last page (the largest offset);
- beside them, the floors measured in the same run: `GET /healthz` and the JSON list
  `GET /v1/tenants` of the same tenants with the same operator.

Server-side time is the console's `Server-Timing: app;dur=` header (from the request's
arrival in the app to its response, template rendering included); the client time adds
loopback HTTP. The issue's target: p95 under 100 ms server-side.

    source .cameleer/services.env
    .venv/bin/python benchmarks/console_bench.py [--tenants 1000] [--requests 200]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth.roles import PlatformRole  # noqa: E402
from api.auth.users import create_user  # noqa: E402
from api.db.models import DriftFinding, Operation, OperationStatus, Tenant, TenantStatus  # noqa: E402
from api.db.session import Scope  # noqa: E402
from api.services import Services  # noqa: E402
from benchmarks.support import database_env, database_settings, percentile, start_api, throwaway_database  # noqa: E402

PASSWORD = "bench-password-that-is-long-enough"
SERVER_TIMING = re.compile(r"app;dur=([0-9.]+)")


def make_fleet(services: Services, count: int) -> None:
    now = datetime.now(UTC)
    with services.db.transaction(Scope.system()) as session:
        tenants = [Tenant(slug=f"bench-{i:05d}", name=f"Bench organisation {i}", tier=("low", "mid")[i % 2],
                          status=TenantStatus.ACTIVE.value, placement=f"shared:eu{1 + i % 2}",
                          created_at=now - timedelta(minutes=i)) for i in range(count)]
        session.add_all(tenants)
        session.flush()
        for i, tenant in enumerate(tenants):
            for age, kind in ((3, "SIGNUP"), (2, "CHANGE_TIER"), (1, "CORRECT_DRIFT")):
                failed = age == 1 and i % 20 == 0
                session.add(Operation(kind=kind, tenant_id=tenant.id, idempotency_key=uuid.uuid4().hex,
                                      request_fingerprint="bench", requested_by="bench", created_at=now - timedelta(hours=age),
                                      status=(OperationStatus.FAILED if failed else OperationStatus.SUCCEEDED).value))
            if i % 10 == 0:
                session.add(DriftFinding(stack=f"tenant-{tenant.slug}", tenant_id=tenant.id,
                                         findings=[{"resource": "Deployment", "what": "update", "paths": ["spec.replicas"]}]))
        create_user(session, "operator@bench.example.com", PASSWORD, platform_role=PlatformRole.OPERATOR)


def console_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
    form = client.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = client.post("/console/login", data={"email": "operator@bench.example.com", "password": PASSWORD,
                                                  "csrf_token": token})
    if answer.status_code != 200 or "Tenants" not in answer.text:
        raise SystemExit(f"console login failed: {answer.status_code}")
    return client


def measure(client: httpx.Client, url: str, count: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    server, total = [], []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        total.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code}")
        timing = SERVER_TIMING.search(response.headers.get("server-timing", ""))
        if timing:
            server.append(float(timing.group(1)))
    figures = {"client_p50": percentile(total, 0.5), "client_p95": percentile(total, 0.95)}
    if server:
        figures |= {"server_p50": percentile(server, 0.5), "server_p95": percentile(server, 0.95)}
    return figures


def show(name: str, figures: dict[str, float]) -> None:
    server = (f"server p50 {figures['server_p50']:6.1f} ms  p95 {figures['server_p95']:6.1f} ms   "
              if "server_p50" in figures else " " * 43)
    print(f"  {name:44s} {server}client p50 {figures['client_p50']:6.1f} ms  p95 {figures['client_p95']:6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    if not (50 <= args.tenants <= 100_000 and 1 <= args.requests <= 10_000):
        parser.error("tenants 50..100000, requests 1..10000")
    with throwaway_database("cameleer_bench") as db:
        services = Services.build(database_settings(db))
        make_fleet(services, args.tenants)
        services.db.dispose()
        api, base = start_api(database_env(db))
        try:
            report(base, args.tenants, args.requests)
        finally:
            api.terminate()
            api.wait(timeout=20)
    return 0


def report(base: str, tenants: int, requests: int) -> None:
    console = console_client(base)
    token = httpx.post(f"{base}/v1/auth/login", json={"email": "operator@bench.example.com", "password": PASSWORD}).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    last_page = -(-tenants // 50)
    print(f"{tenants:,} tenants, {requests} sequential requests per line, one API process")
    show("console /tenants (page 1)", measure(console, "/console/tenants", requests))
    show("console /tenants?q=bench-0042", measure(console, "/console/tenants?q=bench-0042", requests))
    show("console /tenants?last=failed", measure(console, "/console/tenants?last=failed", requests))
    show(f"console /tenants?page={last_page} (last)", measure(console, f"/console/tenants?page={last_page}", requests))
    show("floor: GET /healthz", measure(console, "/healthz", requests))
    show(f"floor: GET /v1/tenants (JSON, all {tenants:,})", measure(console, "/v1/tenants", requests, bearer))

if __name__ == "__main__":
    sys.exit(main())
