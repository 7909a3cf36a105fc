"""`GET /api/license/{tenant}` at a fixed rate from one API process, next to `GET /healthz`.

One real API process (`python -m api`, uvicorn) on loopback, on a throwaway platform
database and throwaway transit keys in the local OpenBao. One tenant with a license, its
server credential (as its tenant servers have it) and an owner signed in. Then, for each
phase, an open-loop load: request i is due at start + i / rate whatever the answers before
it did, sent over a pool of keep-alive connections, and its latency counts from the time it
was due (a server that falls behind shows its queueing; coordinated omission does not hide
it). Phases, in this order:

1. `GET /healthz` (the floor: the same process answering without work);
2. the license with the server credential (what a fleet of tenant servers polls), 200;
3. the same with `If-None-Match: <ETag>`, 304;
4. the license with the owner's access token, 200.

    source .cameleer/services.env
    .venv/bin/python benchmarks/license_bench.py [--rate 500] [--seconds 20] [--connections 32]

The client runs in this process, on the same machine as the server: its own CPU use
counts in the figures. Everything it created (database, transit keys, KV paths) is removed
at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth.roles import TenantRole  # noqa: E402
from api.auth.users import create_user  # noqa: E402
from api.billing.signatures import signature_header  # noqa: E402
from api.db.models import LicenseStatus, Membership, Tenant, TenantStatus  # noqa: E402
from api.db.session import Scope  # noqa: E402
from api.licensing.issue import issue_license  # noqa: E402
from api.server_credential import store as server_credential  # noqa: E402
from api.services import Services  # noqa: E402
from tests.api.vault_support import destroy_transit_keys, remove_tenant_secrets  # noqa: E402
from benchmarks.support import database_env, database_settings, percentile, start_api, throwaway_database  # noqa: E402

PASSWORD = "correct-horse-battery-staple-42"
MAX_SECONDS = 120
MAX_RATE = 5000


@dataclass
class Tenancy:
    tenant_id: str
    slug: str
    key_id: str
    secret: str = field(repr=False)
    owner_email: str


@dataclass
class PhaseResult:
    latencies: list[float]
    statuses: Counter
    errors: Counter
    wall: float
    late_sends: int
    server_cpu: float = 0.0  # seconds of the API process's CPU (user + system) during the phase


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (Linux /proc): what a request costs, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")




# --------------------------------------------------------------------------- set-up


def make_tenant(services: Services) -> Tenancy:
    """A tenant with a license, its server credential (in its KV path) and an owner."""
    slug = f"lbench-{secrets.token_hex(4)}"
    email = f"owner@{slug}.example.com"
    settings = services.settings
    with services.db.transaction(Scope.system()) as session:
        tenant = Tenant(slug=slug, name=f"License bench {slug}", tier="low", status=TenantStatus.ACTIVE.value,
                        placement="shared:eu1")
        session.add(tenant)
        session.flush()
        issue_license(session, services.keys, tenant, tier_name="low", status=LicenseStatus.ACTIVE,
                      issuer=settings.issuer, ttl=timedelta(days=settings.license_ttl_days))
        credential = server_credential.issue(session, services.tenant_secrets, tenant)
        user = create_user(session, email, PASSWORD)
        session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=TenantRole.OWNER.value))
        tenant_id = str(tenant.id)
    return Tenancy(tenant_id, slug, credential.key_id, credential.secret, email)




# --------------------------------------------------------------------------- load


def credential_headers(tenancy: Tenancy, path: str) -> dict[str, str]:
    """Signed as a tenant server signs (a fresh signature per second of the run)."""
    return {server_credential.KEY_HEADER: tenancy.key_id,
            server_credential.SIGNATURE_HEADER: signature_header(tenancy.secret, server_credential.get_message(path))}


async def open_loop(base: str, path: str, headers_for, expected: int, rate: float, seconds: float,
                    connections: int) -> PhaseResult:
    """Send rate * seconds requests on schedule; a request waits for a free connection, and
    that wait counts in its latency."""
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    late = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for _ in range(min(connections, 8)):  # warm the pool
            await client.get("/healthz")

        async def one(due: float) -> None:
            try:
                response = await client.get(path, headers=headers_for())
                statuses[response.status_code] += 1
                if response.status_code != expected:
                    errors[f"{response.status_code}"] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - due)

        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                late += 1
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return PhaseResult(latencies, statuses, errors, wall, late)


def report(name: str, result: PhaseResult, rate: float) -> None:
    lat = result.latencies
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(result.statuses.items()))
    errors = sum(result.errors.values())
    print(f"{name:<38} target {rate:5.0f}/s achieved {len(lat) / result.wall:6.1f}/s  "
          f"p50 {1000 * percentile(lat, 0.5):6.2f} ms  p95 {1000 * percentile(lat, 0.95):6.2f} ms  "
          f"p99 {1000 * percentile(lat, 0.99):6.2f} ms  max {1000 * max(lat):7.2f} ms  "
          f"[{statuses}] errors {errors}{' ' + str(dict(result.errors)) if errors else ''}"
          f"  late sends {result.late_sends}  server CPU {1000 * result.server_cpu / len(lat):.2f} ms/request",
          flush=True)


def run_phases(base: str, pid: int, tenancy: Tenancy, rate: float, seconds: float,
               connections: int) -> dict[str, PhaseResult]:
    path = f"/api/license/{tenancy.tenant_id}"
    signed: dict[int, dict[str, str]] = {}

    def as_server() -> dict[str, str]:
        second = int(time.time())
        if second not in signed:
            signed.clear()
            signed[second] = credential_headers(tenancy, path)
        return signed[second]

    first = httpx.get(base + path, headers=as_server(), timeout=30)
    first.raise_for_status()
    etag = first.headers["ETag"]
    login = httpx.post(base + "/v1/auth/login", json={"email": tenancy.owner_email, "password": PASSWORD}, timeout=30)
    login.raise_for_status()
    owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
    phases = {
        "GET /healthz (floor)": ("/healthz", dict, 200),
        "license, server credential, 200": (path, as_server, 200),
        "license, server credential, 304": (path, lambda: {**as_server(), "If-None-Match": etag}, 304),
        "license, owner's access token, 200": (path, lambda: owner, 200),
    }
    results = {}
    for name, (target, headers_for, expected) in phases.items():
        before = cpu_seconds(pid)
        results[name] = asyncio.run(open_loop(base, target, headers_for, expected, rate, seconds, connections))
        results[name].server_cpu = cpu_seconds(pid) - before
        report(name, results[name], rate)
    return results


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500, help="requests per second (default 500)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase (default 20)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    args = parser.parse_args()
    if not (1 <= args.rate <= MAX_RATE and 1 <= args.seconds <= MAX_SECONDS and 1 <= args.connections <= 256):
        parser.error(f"rate 1..{MAX_RATE}, seconds 1..{MAX_SECONDS}, connections 1..256")

    keys = {"access_signing_key": f"bench-{secrets.token_hex(4)}-access",
            "license_signing_key": f"bench-{secrets.token_hex(4)}-license",
            "audit_signing_key": f"bench-{secrets.token_hex(4)}-audit"}
    with throwaway_database("cameleer_bench") as db:
        api, slugs = None, []
        try:
            env = {**database_env(db), **{f"CAMELEER_{name.upper()}": value for name, value in keys.items()}}
            settings = database_settings(db, **keys)
            services = Services.build(settings)
            tenancy = make_tenant(services)
            slugs.append(tenancy.slug)
            services.db.dispose()
            api, base = start_api(env)
            load = os.getloadavg()
            print(f"license benchmark: one API process on {base}, {os.cpu_count()} cores, "
                  f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
                  f"{args.rate:g} req/s for {args.seconds:g} s per phase, {args.connections} connections, open loop")
            run_phases(base, api.pid, tenancy, args.rate, args.seconds, args.connections)
            load = os.getloadavg()
            print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            return 0
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=20)
            remove_tenant_secrets(slugs)
            destroy_transit_keys(keys.values())


if __name__ == "__main__":
    sys.exit(main())
