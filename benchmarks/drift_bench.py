"""What a fleet drift scan costs: the pre-check against the engine's scan of the same stacks.

Part 1, real stacks: N low-tier tenant stacks (one environment each) brought up with
`cameleer up --create` on the local services in a private file backend; then, in the same
run and on the same fleet:

| scan               | command                                               |
|--------------------|-------------------------------------------------------|
| pre-check          | `cameleer drift --all --json` (no stack drifted: no engine run)  |
| full engine scan   | `cameleer drift --all --full --parallel 2 --json`     |
| kubectl baseline   | `kubectl get <every kind the stacks declare> -A -l app.kubernetes.io/managed-by=... -o json` |

each as a whole process: wall seconds and CPU seconds (user + system of the process and
its children).

Part 2, 1,000 tenants: not real stacks (bringing up 1,000 stacks takes about an hour here).
One real stack's checkpoint is the template: for each synthetic tenant its Kubernetes
objects are applied to the cluster by server-side apply (field manager `cameleer`, the
same objects with the slug replaced; Deployments at 0 replicas, since the pre-check never
reads pods), its schema and role are created with the tenant-database provider's own
`converge`, and a checkpoint document holding what the API server and the database
returned is written to a file backend. The pre-check then runs over all of them
in-process: wall, CPU, API requests, objects, the live cache's memory.

    source .cameleer/services.env
    .venv/bin/python benchmarks/drift_bench.py [--stacks 100] [--synthetic 1000] [--rounds 3] [--json out.json]
    .venv/bin/python benchmarks/drift_bench.py --keep /tmp/fleet ...   # keep the real fleet ...
    .venv/bin/python benchmarks/drift_bench.py --reuse /tmp/fleet ...  # ... and measure it again

Cleans up what it created (namespaces, roles, its temporary backend), except a kept fleet.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automation.checkpoints import CheckpointReader  # noqa: E402
from automation.livestate import MANAGED_SELECTOR  # noqa: E402
from automation.changes import is_encrypted  # noqa: E402
from automation.precheck import run_precheck  # noqa: E402
from automation.tenants import tenant_database_admin_url  # noqa: E402
from components import naming  # noqa: E402

IMAGE = "ghcr.io/cameleer/server@sha256:" + "4f5e1c3b2a9d" * 5 + "0000"
BASELINE_STACK = "shared-eu1"


def timed(argv: list[str], env: dict[str, str], expect: int = 0) -> tuple[float, float, str]:
    """Wall and CPU seconds (the process and its children) of one command, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expect:
        sys.exit(f"{' '.join(argv[:4])} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


class Bench:
    def __init__(self, root: Path, admin_url: str, *, reuse: bool = False) -> None:
        self.root, self.admin_url = root, admin_url
        self.env = {**os.environ, "CAMELEER_DATA_DIR": str(root / "data"),
                    "PULUMI_BACKEND_URL": f"file://{root / 'state'}", "CAMELEER_ACTOR": "drift-bench",
                    "PULUMI_CONFIG_PASSPHRASE": "drift-bench", "CAMELEER_TENANT_DATABASE_ADMIN_URL": admin_url}
        for key in ("PULUMI_CONFIG_PASSPHRASE_FILE", "CAMELEER_CONFIG_PASSPHRASE_FILE"):
            self.env.pop(key, None)
        (root / "state").mkdir(parents=True, exist_ok=reuse)
        self.cameleer = str(REPO / ".venv" / "bin" / "cameleer")
        self.slugs: list[str] = []

    def up(self, slug: str) -> None:
        self.slugs.append(slug)  # before the up: a failed one leaves objects to clean up too
        endpoint = os.environ["CAMELEER_TENANT_DATABASE_ENDPOINT"]
        timed([self.cameleer, "up", f"tenant-{slug}", "--create", "--reason", "drift bench",
               "--set", f"slug={slug}", "--set", "tier=low", "--set", 'environments=["prod"]',
               "--set", f"image={IMAGE}", "--set", "rolloutTimeout=120s", "--set", f"databaseEndpoint={endpoint}",
               "--set-secret", f"databaseAdminUrl={self.admin_url}",
               "--set-secret", "license=bench.license.token"], self.env)

    def drift(self, *args: str) -> tuple[float, float, dict]:
        wall, cpu, out = timed([self.cameleer, "drift", "--all", "--json", *args], self.env)
        return wall, cpu, json.loads(out)


def shared_baseline(env: dict[str, str], root: Path):
    """Bring up the local cluster's shared baseline (tenants need its PriorityClasses) in a
    backend of its own, so that the scanned fleet holds tenant stacks only. Returns how to
    leave it: destroyed, or, when its objects were there before (the demo keeps a baseline),
    only its stack removed."""
    from automation.history import UpdateMetadata
    from automation.operations import StackOperations
    from automation.settings import Settings
    from automation.tenants import TenantPlatform, baseline_config
    from components.catalog import Placement, tiers_placed

    present = set(subprocess.run(["kubectl", "get", "priorityclass", "-o", "name"], capture_output=True,
                                 text=True, check=True).stdout.split())
    existed = any(f"priorityclass.scheduling.k8s.io/{tier.priority_class_name}" in present
                  for tier in tiers_placed(Placement.SHARED))
    (root / "baseline").mkdir(parents=True, exist_ok=True)
    ops = StackOperations(Settings.from_env({**env, "PULUMI_BACKEND_URL": f"file://{root / 'baseline'}"}))
    why = UpdateMetadata("drift-bench", "shared baseline for the benchmark's tenants")
    ops.up(BASELINE_STACK, why, config=baseline_config(TenantPlatform.from_env(env)), create=True, refresh=True)

    def leave() -> None:
        if existed:
            ops.factory.run_cli(["stack", "rm", BASELINE_STACK, "--force", "--yes", "--preserve-config"])
        else:
            ops.destroy(BASELINE_STACK, why)
    return leave


def kinds_of(checkpoint) -> list[str]:
    """The kinds a stack declares, as kubectl names them (plural.group), by API discovery."""
    from automation.livestate import ClusterReader, Kind

    reader = ClusterReader("local", Path(os.environ["KUBECONFIG"]).read_text())
    kinds = {Kind(r["inputs"]["apiVersion"], r["inputs"]["kind"]) for r in checkpoint.resources
             if r["type"].startswith("kubernetes:")}
    names = []
    for kind in sorted(kinds):
        plural = reader.collection_path(kind).rsplit("/", 1)[-1]
        names.append(f"{plural}.{kind.api_version.split('/')[0]}" if "/" in kind.api_version else plural)
    reader.close()
    return names


# --------------------------------------------------------------------------- part 2: synthetic fleet

def synthesize(template, template_slug: str, slug: str, api, conn) -> dict:
    """One synthetic tenant like `template`: objects applied, schema converged; its checkpoint."""
    from components.providers.postgres import converge, observe

    text = json.dumps(list(template.resources)).replace(template_slug, slug)
    resources = json.loads(text)
    for res in resources:
        if res["type"].startswith("kubernetes:"):
            res["outputs"] = {**apply(api, res["inputs"]), "__fieldManager": "cameleer"}
        elif res["type"].endswith("postgres:TenantSchema"):
            identifier = res["outputs"]["identifier"]
            converge(conn, identifier, uuid.uuid4().hex, int(res["outputs"]["connection_limit"]),
                     synthetic_owner(slug), state_owned=False)
            res["outputs"]["observed"] = observe(conn, identifier, None)
            res["outputs"]["database"] = conn.info.dbname
    return {"version": 3, "checkpoint": {"stack": f"tenant-{slug}", "latest": {"resources": resources}}}


def synthetic_owner(slug: str):
    from components.providers.postgres import Owner

    return Owner(tenant=slug, stack=f"cameleer/tenant-{slug}")


def apply(api, inputs: dict) -> dict:
    body = json.loads(json.dumps(inputs))
    if body["kind"] == "Deployment":
        body["spec"]["replicas"] = inputs["spec"]["replicas"] = 0
    if is_encrypted(body.get("data")):
        keys = ("license.jwt",) if body["metadata"]["name"] == "cameleer-license" else (
            "database", "host", "password", "port", "schema", "username")
        body["data"] = {key: base64.b64encode(b"synthetic").decode() for key in keys}
    meta = body["metadata"]
    group = "/api/v1" if body["apiVersion"] == "v1" else f"/apis/{body['apiVersion']}"
    plural = {"NetworkPolicy": "networkpolicies"}.get(body["kind"], body["kind"].lower() + "s")
    scope = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    response = api.call_api(
        f"{group}{scope}/{plural}/{meta['name']}", "PATCH", body=body,
        query_params=[("fieldManager", "cameleer"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        auth_settings=["BearerToken"], _preload_content=False, _request_timeout=60)[0]
    return json.loads(response.data)


def synthetic_fleet(template, template_slug: str, count: int, admin_url: str, root: Path) -> tuple[list[str], float]:
    import psycopg

    from automation.readiness import api_client

    api = api_client(Path(os.environ["KUBECONFIG"]).read_text())
    directory = root / "synthetic" / ".pulumi" / "stacks" / "cameleer"
    directory.mkdir(parents=True)
    prefix = f"sy{uuid.uuid4().hex[:5]}"
    slugs = [f"{prefix}{i:04d}" for i in range(count)]
    started = time.monotonic()

    def one(slug: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            document = synthesize(template, template_slug, slug, api, conn)
        (directory / f"tenant-{slug}.json").write_text(json.dumps(document))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, slugs))
    return slugs, time.monotonic() - started


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cleanup(slugs: list[str], admin_url: str) -> None:
    import psycopg

    from components.providers.postgres import drop

    namespaces = [naming.namespace_name(slug, "prod") for slug in slugs]
    for start in range(0, len(namespaces), 200):
        subprocess.run(["kubectl", "delete", "namespace", "--wait=false", "--ignore-not-found",
                        *namespaces[start:start + 200]], capture_output=True, check=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for slug in slugs:
            drop(conn, naming.database_identifier(slug, "prod"), synthetic_owner(slug))


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", type=int, default=100)
    parser.add_argument("--synthetic", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the real fleet in this directory (no cleanup of it)")
    parser.add_argument("--reuse", type=Path, help="measure a fleet kept by an earlier --keep run")
    args = parser.parse_args()
    admin_url = tenant_database_admin_url()
    if not admin_url or not os.environ.get("KUBECONFIG"):
        sys.exit("needs the local services: source .cameleer/services.env")
    root = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="drift-bench-"))
    bench = Bench(root, admin_url, reuse=args.reuse is not None)
    prefix = f"db{uuid.uuid4().hex[:5]}"
    figures: dict[str, object] = {"stacks": args.stacks, "synthetic": args.synthetic}
    synthetic: list[str] = []
    keep = args.keep is not None or args.reuse is not None
    leave_baseline = shared_baseline(bench.env, root)
    try:
        if args.reuse is None:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(bench.up, [f"{prefix}{i:03d}" for i in range(args.stacks)]))
            print(f"brought up {args.stacks} tenant stacks in {time.monotonic() - started:.0f}s", flush=True)

        checkpoints = CheckpointReader(bench.env["PULUMI_BACKEND_URL"], "cameleer").read()
        args.stacks = len(checkpoints)
        kinds = ",".join(kinds_of(next(iter(checkpoints.values()))))
        pre, full, kubectl = [], [], []
        for _ in range(args.rounds):
            wall, cpu, report = bench.drift()
            assert report["summary"]["engine_checked"] == 0, [s["engine_reason"] for s in report["stacks"]][:3]
            pre.append((wall, cpu, report["precheck"]))
            wall, cpu, _ = timed(["kubectl", "get", kinds, "-A", "-l", MANAGED_SELECTOR, "-o", "json"], bench.env)
            kubectl.append((wall, cpu))
        for _ in range(max(1, args.rounds - 1)):
            wall, cpu, report = bench.drift("--full", "--parallel", "2")
            assert report["summary"]["engine_checked"] == args.stacks
            full.append((wall, cpu))
        figures["real"] = report_real(args.stacks, pre, full, kubectl)

        template_stack = sorted(checkpoints)[0]
        synthetic, seconds = synthetic_fleet(checkpoints[template_stack], template_stack.removeprefix("tenant-"),
                                             args.synthetic, admin_url, root)
        print(f"applied the objects of {args.synthetic} synthetic tenants in {seconds:.0f}s", flush=True)
        figures["synthetic_fleet"] = report_synthetic(root, args.synthetic, args.rounds, admin_url)
    finally:
        cleanup(synthetic if keep else bench.slugs + synthetic, admin_url)
        leave_baseline()
        shutil.rmtree(root / "synthetic", ignore_errors=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def report_real(stacks: int, pre: list, full: list, kubectl: list) -> dict:
    med = statistics.median
    figures = {
        "precheck_wall_s": med(w for w, _, _ in pre), "precheck_cpu_s": med(c for _, c, _ in pre),
        "precheck_in_process_s": med(p["duration_seconds"] for _, _, p in pre),
        "precheck_requests": pre[-1][2]["requests"], "precheck_objects": pre[-1][2]["objects"],
        "full_wall_s": med(w for w, _ in full), "full_cpu_s": med(c for _, c in full),
        "kubectl_wall_s": med(w for w, _ in kubectl), "kubectl_cpu_s": med(c for _, c in kubectl),
    }
    print(f"\n{stacks} real tenant stacks, medians of {len(pre)} pre-check and {len(full)} full runs")
    print(f"{'scan':<28}{'wall s':>9}{'CPU s':>9}{'ms/stack':>10}")
    for name, wall, cpu in (("pre-check (cameleer drift)", figures["precheck_wall_s"], figures["precheck_cpu_s"]),
                            ("full engine scan (--full)", figures["full_wall_s"], figures["full_cpu_s"]),
                            ("kubectl get (same kinds)", figures["kubectl_wall_s"], figures["kubectl_cpu_s"])):
        print(f"{name:<28}{wall:>9.2f}{cpu:>9.2f}{1000 * wall / stacks:>10.1f}")
    print(f"pre-check inside the process: {figures['precheck_in_process_s']:.2f}s, "
          f"{figures['precheck_requests']} API requests, {figures['precheck_objects']} objects")
    print(f"full scan / pre-check: wall x{figures['full_wall_s'] / figures['precheck_wall_s']:.1f}, "
          f"CPU x{figures['full_cpu_s'] / figures['precheck_cpu_s']:.1f}")
    return figures


def report_synthetic(root: Path, count: int, rounds: int, admin_url: str) -> dict:
    runs = []
    for _ in range(rounds):
        rss_before = rss_mb()
        cpu_before, started = time.process_time(), time.monotonic()
        checkpoints = CheckpointReader(f"file://{root / 'synthetic'}", "cameleer").read()
        run = run_precheck(checkpoints, database_admin_url=admin_url)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu_before
        if run.flagged():
            sys.exit(f"synthetic stacks flagged: {[run.verdicts[s].reason for s in run.flagged()[:3]]}")
        runs.append((wall, cpu, run.requests, run.objects, rss_mb() - rss_before))
        del checkpoints, run
    wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    figures = {"wall_s": wall, "cpu_s": cpu, "requests": runs[-1][2], "objects": runs[-1][3],
               "ms_per_stack": 1000 * wall / count, "rss_growth_mb_first_run": runs[0][4]}
    print(f"\npre-check over {count} synthetic tenants (objects applied to the cluster, in-process), "
          f"median of {rounds}")
    print(f"wall {wall:.2f}s  CPU {cpu:.2f}s  {figures['ms_per_stack']:.1f} ms/stack  "
          f"{figures['requests']} API requests  {figures['objects']} objects  "
          f"RSS +{figures['rss_growth_mb_first_run']:.0f} MB (first run)")
    return figures


if __name__ == "__main__":
    main()
