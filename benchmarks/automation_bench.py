"""What the engine costs per stack, and what the automation layer adds on top of it.

For each of N small tenant-like stacks (tests/integration/programs/automation_tenant: a
Namespace, a ConfigMap and a Deployment, typed pulumi-kubernetes resources, checked
by the project's CrossGuard pack), this measures, side by side and interleaved:

| operation        | automation layer (`StackOperations`)   | bare CLI                                        |
|------------------|----------------------------------------|-------------------------------------------------|
| preview          | `preview()`                            | `pulumi preview --policy-pack policy`           |
| no-change up     | `up()`                                 | `pulumi up --yes --skip-preview --policy-pack policy -m ...` |
| refresh          | `refresh()`                            | `pulumi refresh --yes --skip-preview -m ...`    |
| drift check      | `check_drift()`                        | `pulumi refresh --preview-only`                 |

and prints the median seconds per stack for each, and the layer's overhead. Both sides use
the same project, backend, passphrase, PULUMI_HOME and PATH.

    source .cameleer/services.env
    .venv/bin/python benchmarks/automation_bench.py [--stacks 3] [--rounds 3] [--json out.json]
    .venv/bin/python benchmarks/automation_bench.py --backend postgres   # state in PostgreSQL

Needs the local services (KUBECONFIG) and the built CLI; cleans up its stacks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automation.history import UpdateMetadata  # noqa: E402
from automation.operations import StackOperations  # noqa: E402
from automation.settings import Settings  # noqa: E402

PROGRAM = REPO / "tests" / "integration" / "programs" / "automation_tenant"
OPERATIONS = ("preview", "no-change up", "refresh", "drift check")


def make_project(root: Path) -> Path:
    project = root / "project"
    shutil.copytree(PROGRAM, project)
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = sys.prefix
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    (project / "config").mkdir()
    return project


def backend_for(kind: str, root: Path) -> str:
    if kind == "file":
        (root / "state").mkdir()
        return f"file://{root / 'state'}"
    url = os.environ.get("CAMELEER_STATE_POSTGRES_URL")
    if not url:
        sys.exit("--backend postgres needs CAMELEER_STATE_POSTGRES_URL (source .cameleer/services.env)")
    return url


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per stack and operation")
    parser.add_argument("--backend", choices=("file", "postgres"), default="file")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if not os.environ.get("KUBECONFIG"):
        sys.exit("KUBECONFIG is not set: source .cameleer/services.env after scripts/services.sh start")

    with tempfile.TemporaryDirectory(prefix="cameleer-bench-") as tmp:
        root = Path(tmp)
        project = make_project(root)
        env = {
            **os.environ,
            "CAMELEER_PROJECT_DIR": str(project),
            "CAMELEER_DATA_DIR": str(root / "data"),
            "CAMELEER_BACKEND_URL": backend_for(args.backend, root),
            "CAMELEER_POLICY_PACKS": str(REPO / "policy"),
            "CAMELEER_CONFIG_PASSPHRASE": "benchmark",
            "CAMELEER_ACTOR": "benchmark",
        }
        ops = StackOperations(Settings.from_env(env))
        cli_env = {**os.environ, **ops.factory.env_vars()}
        cli_env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        pulumi = str(ops.settings.pulumi_executable)
        policy = str(REPO / "policy")
        why = UpdateMetadata("benchmark", "benchmark")
        run_id = uuid.uuid4().hex[:6]
        stacks = [f"tenant-bench{i}-{run_id}" for i in range(args.stacks)]

        def bare(stack: str, *cli_args: str) -> Callable[[], object]:
            """`pulumi <cli_args> -s <stack>` as an operator runs it on a service-created
            stack: with the service's settings file (`--config-file`), as the layer does."""
            command = [pulumi, "--non-interactive", *cli_args, "-s", stack,
                       "--config-file", str(ops.factory.config_file(stack))]

            def run() -> None:
                subprocess.run(command, cwd=project, env=cli_env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return run

        print(f"engine: {pulumi}  backend: {args.backend}  stacks: {len(stacks)}  rounds: {args.rounds}",
              file=sys.stderr)
        setup = {}
        for stack in stacks:
            setup[stack] = timed(lambda s=stack: ops.provision(s, {"replicas": 1, "greeting": "hello"}, why))
            print(f"provisioned {stack} in {setup[stack]:.1f} s", file=sys.stderr)

        samples: dict[str, dict[str, list[float]]] = {op: {"layer": [], "bare": []} for op in OPERATIONS}
        try:
            for round_ in range(args.rounds):
                for stack in stacks:
                    pairs = {
                        "preview": (lambda s=stack: ops.preview(s),
                                    bare(stack, "preview", "--policy-pack", policy)),
                        "no-change up": (lambda s=stack: ops.up(s, why),
                                         bare(stack, "up", "--yes", "--skip-preview", "--policy-pack", policy,
                                              "-m", why.message())),
                        "refresh": (lambda s=stack: ops.refresh(s, why),
                                    bare(stack, "refresh", "--yes", "--skip-preview", "-m", why.message())),
                        "drift check": (lambda s=stack: ops.check_drift(s),
                                        bare(stack, "refresh", "--preview-only")),
                    }
                    for op, (layer_fn, bare_fn) in pairs.items():
                        # Alternate which side goes first, so neither always gets a warm cache.
                        order = (("layer", layer_fn), ("bare", bare_fn))
                        for side, fn in (order if round_ % 2 == 0 else order[::-1]):
                            samples[op][side].append(timed(fn))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for stack in stacks:
                try:
                    ops.destroy(stack, UpdateMetadata("benchmark", "benchmark cleanup"))
                except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                    print(f"cleanup of {stack} failed: {exc}", file=sys.stderr)

    results = []
    print(f"\n{'operation':<14} {'layer s/stack':>14} {'bare CLI s/stack':>17} {'overhead s':>11} {'overhead':>9}")
    for op in OPERATIONS:
        layer = statistics.median(samples[op]["layer"])
        bare_ = statistics.median(samples[op]["bare"])
        results.append({"operation": op, "layer_seconds": round(layer, 3), "bare_seconds": round(bare_, 3),
                        "overhead_seconds": round(layer - bare_, 3),
                        "overhead_percent": round(100 * (layer - bare_) / bare_, 1),
                        "samples": len(samples[op]["layer"])})
        print(f"{op:<14} {layer:>14.2f} {bare_:>17.2f} {layer - bare_:>+11.2f} {100 * (layer - bare_) / bare_:>+8.0f}%")
    print(f"\nprovision (create, 3 resources): median {statistics.median(setup.values()):.2f} s per stack")
    if args.json:
        args.json.write_text(json.dumps({
            "backend": args.backend, "stacks": len(stacks), "rounds": args.rounds,
            "provision_seconds": round(statistics.median(setup.values()), 3), "operations": results,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
