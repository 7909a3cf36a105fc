"""What a signup costs end to end on the real engine, next to the bare engine, and how the
licensing endpoint holds up under load.

Runs the control plane for real on loopback (tests/integration/control_plane.py): a
throwaway platform database, the API server (`python -m api`, uvicorn) and workers
(`python -m api.worker`) as processes, the real StackDriver, a private Pulumi file backend
and a throwaway tenant database. Then measures:

1. signup -> ACTIVE latency (POST /v1/signup, its mailed link read from the API's local
   outbox and followed with POST /v1/signup/verify, until GET /v1/operations/{id} says
   SUCCEEDED, polled every 0.1 s) over N sequential signups with one worker;
2. the same over N concurrent signups with two workers (plus wall time and tenants/min);
3. a bare `pulumi up --yes --skip-preview --policy-pack policy` of the same stack program
   (`tenant-<slug>`) with the same config (automation.tenants.stack_config, a real license
   from the first signup), N times, on the same backend;
4. GET /api/license/{tenant} at load: R requests over T client threads (keep-alive), once
   unconditional (200 + body) and once conditional with the ETag (304).

    source .cameleer/services.env
    .venv/bin/python benchmarks/control_plane_bench.py [N] [--tier low] [--license-requests 500] [--license-threads 4]

Every loop is bounded (N <= 20, timeouts on every wait). All stacks it created are
destroyed and removed at the end, the databases dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.control_plane import (  # noqa: E402
    ControlPlane,
    HarnessError,
    pulumi_root,
    throwaway_tenant_database,
)
from benchmarks.support import percentile  # noqa: E402

MAX_SIGNUPS = 20
OPERATION_TIMEOUT = 600
POLL_SECONDS = 0.1




def summary(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5):6.2f} s   p95 {percentile(values, 0.95):6.2f} s   (n={len(values)})"


def say(message: str) -> None:
    print(f"-- {message}", file=sys.stderr, flush=True)


def wait_workers(cp: ControlPlane, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while cp.scalar("SELECT count(*) FROM procrastinate_workers") < count:
        if time.monotonic() > deadline:
            raise HarnessError(f"{count} worker(s) did not register within {timeout:g}s:\n{cp.logs()}")
        time.sleep(0.2)


def one_signup(cp: ControlPlane, tier: str) -> dict[str, Any]:
    """Sign up, follow the mailed link and the operation; returns the client-observed latency
    (verification included) and the step times."""
    slug = cp.unique_slug("bench")
    started = time.perf_counter()
    response = cp.signup(slug, tier)
    if response.status_code != 202:
        raise HarnessError(f"signup refused: {response.status_code} {response.text}")
    accepted = response.json()
    headers = cp.login(f"owner@{slug}.example.com")
    operation = cp.wait_operation(accepted["operation"]["id"], headers, timeout=OPERATION_TIMEOUT, poll=POLL_SECONDS)
    latency = time.perf_counter() - started
    if operation["status"] != "SUCCEEDED":
        raise HarnessError(f"signup of {slug} failed: {operation['error']}")
    stack_up = cp.scalar(
        "SELECT extract(epoch FROM (s->>'finished_at')::timestamptz - (s->>'started_at')::timestamptz) "
        "FROM operations, jsonb_array_elements(steps) s WHERE id = %s AND s->>'name' = 'stack_up'",
        accepted["operation"]["id"])
    return {"slug": slug, "tenant_id": accepted["tenant"]["id"], "headers": headers, "latency": latency,
            "stack_up": float(stack_up)}


def raw_pulumi_up(cp: ControlPlane, tier: str, license_jwt: str) -> float:
    """`pulumi up` of a new tenant stack by hand: init and config first (not timed), then the up."""
    from automation.tenants import TenantPlatform, TenantSpec, stack_config
    from automation.workspace import config_json
    from components.catalog import get_tier

    slug = cp.unique_slug("raw")
    stack = f"tenant-{slug}"
    spec = TenantSpec(slug=slug, placement="shared:eu1", tier=tier,
                      environments=get_tier(tier).standard_environments, license_jwt=license_jwt)
    # The stack and its settings file where the service keeps them (never in the work tree).
    factory = cp.stack_operations().factory
    factory.create_or_select(stack)
    config_file = str(factory.config_file(stack))
    cp.pulumi("config", "set-all", "--stack", stack, "--config-file", config_file,
              "--json", config_json(stack_config(spec, TenantPlatform.from_env(cp.env))))
    started = time.perf_counter()
    cp.pulumi("up", "--yes", "--skip-preview", "--non-interactive", "--stack", stack, "--config-file", config_file,
              "--policy-pack", str(REPO / "policy"), "--message", "benchmark: raw pulumi up")
    return time.perf_counter() - started


def license_load(cp: ControlPlane, tenant: dict[str, Any], requests: int, threads: int,
                 conditional: bool) -> dict[str, float]:
    path = f"/api/license/{tenant['tenant_id']}"
    with cp.client() as client:
        first = client.get(path, headers=tenant["headers"])
        first.raise_for_status()
        etag = first.headers["ETag"]
    expected = 304 if conditional else 200
    headers = {**tenant["headers"], **({"If-None-Match": etag} if conditional else {})}
    share = [requests // threads + (1 if i < requests % threads else 0) for i in range(threads)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(threads)

    def client_thread(count: int) -> None:
        mine = []
        with cp.client(timeout=30) as client:
            start_gate.wait()
            for _ in range(count):
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                mine.append(time.perf_counter() - started)
                if response.status_code != expected:
                    errors.append(f"{response.status_code} {response.text[:200]}")
        with lock:
            latencies.extend(mine)

    wall_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(client_thread, share))
    wall = time.perf_counter() - wall_started
    if errors:
        raise HarnessError(f"{len(errors)} license requests did not answer {expected}: {errors[0]}")
    return {"p50_ms": 1000 * percentile(latencies, 0.5), "p95_ms": 1000 * percentile(latencies, 0.95),
            "rps": len(latencies) / wall, "n": len(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=3, help=f"signups per phase (1..{MAX_SIGNUPS}, default 3)")
    parser.add_argument("--tier", default="low", choices=("low", "mid"), help="shared tier of the signups")
    parser.add_argument("--license-requests", type=int, default=500)
    parser.add_argument("--license-threads", type=int, default=4)
    args = parser.parse_args()
    if not 1 <= args.n <= MAX_SIGNUPS:
        parser.error(f"N must be between 1 and {MAX_SIGNUPS}")
    if not 1 <= args.license_threads <= 32 or not 1 <= args.license_requests <= 100_000:
        parser.error("--license-threads must be 1..32 and --license-requests 1..100000")
    for name in ("KUBECONFIG", "CAMELEER_POSTGRES_ADMIN_DSN", "CAMELEER_TENANT_DATABASE_ENDPOINT"):
        if not os.environ.get(name):
            sys.exit(f"{name} is not set: source .cameleer/services.env after scripts/services.sh start")
    pulumi_root()

    slugs: list[str] = []
    results: dict[str, Any] = {}
    total_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cameleer-cp-bench-") as tmp, throwaway_tenant_database(slugs) as tenant_db:
        cp = ControlPlane(Path(tmp), tenant_db)
        try:
            cp.start()
            cp.bring_up_shared_baseline()
            say(f"API on {cp.base_url}; {args.n} signups per phase, tier {args.tier}")

            cp.start_worker()
            wait_workers(cp, 1)
            sequential = []
            for index in range(args.n):
                sequential.append(one_signup(cp, args.tier))
                say(f"sequential signup {index + 1}/{args.n}: {sequential[-1]['latency']:.2f} s")
            results["sequential"] = sequential

            cp.start_worker()
            wait_workers(cp, 2)
            wall_started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.n) as pool:
                concurrent = list(pool.map(lambda _: one_signup(cp, args.tier), range(args.n)))
            results["concurrent_wall"] = time.perf_counter() - wall_started
            results["concurrent"] = concurrent
            each = ", ".join(f"{c['latency']:.2f}" for c in concurrent)
            say(f"concurrent signups: {each} s "
                f"(wall {results['concurrent_wall']:.2f} s)")
            cp.stop_workers()  # the engine to itself for the bare runs

            with cp.client() as client:
                license_jwt = client.get(f"/api/license/{sequential[0]['tenant_id']}",
                                         headers=sequential[0]["headers"]).raise_for_status().json()["token"]
            raw = []
            for index in range(args.n):
                raw.append(raw_pulumi_up(cp, args.tier, license_jwt))
                say(f"raw pulumi up {index + 1}/{args.n}: {raw[-1]:.2f} s")
            results["raw"] = raw

            for conditional in (False, True):
                key = "license_304" if conditional else "license_200"
                results[key] = license_load(cp, sequential[0], args.license_requests, args.license_threads, conditional)
                say(f"license load ({'If-None-Match' if conditional else 'unconditional'}) done")
        finally:
            slugs.extend(cp.slugs)
            say("destroying the benchmark's stacks")
            problems = cp.close(parallel=2)
            for problem in problems:
                print(f"cleanup: {problem}", file=sys.stderr)

    cores = os.cpu_count()
    print(f"\ncontrol plane benchmark: N={args.n}, tier {args.tier}, {cores} cores, file backend, loopback")
    seq, conc = results["sequential"], results["concurrent"]
    print(f"signup -> ACTIVE, sequential, 1 worker : {summary([s['latency'] for s in seq])}")
    print(f"signup -> ACTIVE, concurrent, 2 workers: {summary([c['latency'] for c in conc])}   "
          f"wall {results['concurrent_wall']:.2f} s = {60 * len(conc) / results['concurrent_wall']:.1f} tenants/min")
    print(f"  stack_up step (engine via automation): {summary([s['stack_up'] for s in seq])}   (sequential runs)")
    print(f"raw `pulumi up` of the same program+config: {summary(results['raw'])}")
    print(f"  control-plane overhead over raw up (p50): "
          f"{percentile([s['latency'] for s in seq], 0.5) - percentile(results['raw'], 0.5):+.2f} s")
    for key, label in (("license_200", "unconditional (200)"), ("license_304", "If-None-Match (304)")):
        load = results[key]
        print(f"GET /api/license {label:<20}: p50 {load['p50_ms']:6.1f} ms   p95 {load['p95_ms']:6.1f} ms   "
              f"{load['rps']:7.1f} req/s   ({load['n']} requests, {args.license_threads} threads)")
    print(f"total benchmark time (incl. set-up and clean-up): {time.perf_counter() - total_started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
