"""`GET /api/license/{tenant}` at a fixed rate from one API process, next to `GET /healthz`.

One real API process (`python -m api`, uvicorn) on loopback, on a throwaway platform
database and throwaway transit keys in the local OpenBao. One tenant with a license, its
server credential (as its tenant servers have it) and an owner signed in. Then, for each
phase, an open-loop load from vegeta (tools/go/vegeta, built by scripts/toolchain.sh): a
request is started on schedule, at rate per second, whatever the answers before it did (it
opens another connection rather than wait for a busy one), so a server that falls behind
shows its queueing. Phases, in this order:

1. `GET /healthz` (the floor: the same process answering without work);
2. the license with the server credential (what a fleet of tenant servers polls), 200;
3. the same with `If-None-Match: <ETag>`, 304;
4. the license with the owner's access token, 200, at its own lower rate: a person's
   request (the token's revocation and the membership checked each time), not the fleet's.

    source .cameleer/services.env
    .venv/bin/python benchmarks/license_bench.py [--rate 500] [--member-rate 100] [--seconds 20]

The client is compiled and light, but it runs on the same two cores as the server, the
database and the local services: its CPU per request is printed beside the server's. A
phase's requests carry one signature, made when the phase starts: the server accepts it for
300 s, longer than a phase may last. Everything the run created (database, transit keys, KV
paths) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
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
from benchmarks.support import database_env, database_settings, start_api, throwaway_database  # noqa: E402

PASSWORD = "correct-horse-battery-staple-42"
MAX_SECONDS = 120  # under the signature's tolerance (server_credential.TOLERANCE_SECONDS)
MAX_RATE = 5000
VEGETA = REPO / ".venv" / "bin" / "vegeta"


@dataclass
class Tenancy:
    tenant_id: str
    slug: str
    key_id: str
    secret: str = field(repr=False)
    owner_email: str


@dataclass
class PhaseResult:
    report: dict  # vegeta's JSON report: latencies in ns, status codes, errors
    server_cpu: float  # seconds of the API process's CPU (user + system) during the phase
    client_cpu: float  # seconds of vegeta's CPU during the phase

    @property
    def requests(self) -> int:
        return self.report["requests"]


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (Linux /proc): what a request costs, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    """Signed as a tenant server signs."""
    return {server_credential.KEY_HEADER: tenancy.key_id,
            server_credential.SIGNATURE_HEADER: signature_header(tenancy.secret, server_credential.get_message(path))}


def attack(url: str, headers: dict[str, str], rate: float, seconds: float, server_pid: int) -> PhaseResult:
    """One vegeta run of ``seconds`` at ``rate``; its report, and both sides' CPU meanwhile."""
    target = json.dumps({"method": "GET", "url": url, "header": {k: [v] for k, v in headers.items()}}) + "\n"
    with tempfile.TemporaryDirectory(prefix="license-bench-") as work:
        results = Path(work) / "results.bin"
        server_before, client_before = cpu_seconds(server_pid), children_cpu_seconds()
        subprocess.run([str(VEGETA), "attack", "-format=json", f"-rate={rate:g}/s", f"-duration={seconds:g}s",
                        "-timeout=30s", f"-output={results}"], input=target, text=True, check=True)
        server_cpu, client_cpu = cpu_seconds(server_pid) - server_before, children_cpu_seconds() - client_before
        report = subprocess.run([str(VEGETA), "report", "-type=json", str(results)],
                                capture_output=True, text=True, check=True).stdout
    return PhaseResult(json.loads(report), server_cpu, client_cpu)


def report(name: str, result: PhaseResult, expected: int) -> None:
    r, ms = result.report, lambda ns: ns / 1e6
    latencies = r["latencies"]
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(r["status_codes"].items()))
    unexpected = result.requests - r["status_codes"].get(str(expected), 0)
    print(f"{name:<36} {r['rate']:6.1f}/s sent {r['throughput']:6.1f}/s answered  "
          f"p50 {ms(latencies['50th']):6.2f} ms  p90 {ms(latencies['90th']):6.2f} ms  "
          f"p99 {ms(latencies['99th']):6.2f} ms  max {ms(latencies['max']):7.2f} ms  "
          f"[{statuses}] unexpected {unexpected}{' ' + str(r['errors'][:3]) if r['errors'] else ''}  "
          f"CPU/request server {1000 * result.server_cpu / result.requests:.2f} ms, "
          f"client {1000 * result.client_cpu / result.requests:.2f} ms", flush=True)


def run_phases(base: str, pid: int, tenancy: Tenancy, rate: float, member_rate: float,
               seconds: float) -> dict[str, PhaseResult]:
    path = f"/api/license/{tenancy.tenant_id}"
    as_server = credential_headers(tenancy, path)
    first = httpx.get(base + path, headers=as_server, timeout=30)
    first.raise_for_status()
    login = httpx.post(base + "/v1/auth/login", json={"email": tenancy.owner_email, "password": PASSWORD}, timeout=30)
    login.raise_for_status()
    owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
    phases = {
        "GET /healthz (floor)": ("/healthz", {}, 200, rate),
        "license, server credential, 200": (path, as_server, 200, rate),
        "license, server credential, 304": (path, {**as_server, "If-None-Match": first.headers["ETag"]}, 304, rate),
        "license, owner's access token, 200": (path, owner, 200, member_rate),
    }
    results = {}
    for name, (target, headers, expected, phase_rate) in phases.items():
        results[name] = attack(base + target, headers, phase_rate, seconds, pid)
        report(name, results[name], expected)
    return results


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500, help="requests per second (default 500)")
    parser.add_argument("--member-rate", type=float, default=100,
                        help="requests per second with the owner's access token (default 100)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase (default 20)")
    args = parser.parse_args()
    if not (1 <= args.rate <= MAX_RATE and 1 <= args.member_rate <= MAX_RATE and 1 <= args.seconds <= MAX_SECONDS):
        parser.error(f"rates 1..{MAX_RATE}, seconds 1..{MAX_SECONDS}")
    if not VEGETA.exists():
        parser.error(f"{VEGETA} is missing: run scripts/toolchain.sh (it builds vegeta from tools/go/vegeta)")

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
                  f"{args.rate:g} req/s ({args.member_rate:g} with the owner's token) for {args.seconds:g} s per phase, "
                  "open loop (vegeta)")
            run_phases(base, api.pid, tenancy, args.rate, args.member_rate, args.seconds)
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
