"""How fast the placement rule places a fleet: 10,000 synthetic signups over 50 clusters.

The rule (`api.clusters.placement.choose_cluster`) runs once per signup, over every
registered cluster; `simulate` feeds it the signups one after another, as they would arrive.
The fleet: 50 shared clusters (every tenth one cordoned) of 512 or 768 CPU, 1 or 2 TiB and
250 or 300 tenant slots; the signups: low and mid tenants at random (fixed seed).

    .venv/bin/python benchmarks/placement_bench.py [--tenants 10000] [--clusters 50] [--runs 5]

Prints the time of each run, the median, how many tenants found a cluster, and the fullest
cluster's use (which must not pass 100%).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.clusters.placement import ClusterLoad, simulate  # noqa: E402
from components.catalog import TIERS, Compute, Placement  # noqa: E402


def fleet(count: int, rng: random.Random) -> list[ClusterLoad]:
    return [ClusterLoad(f"shared-{index:02d}", Placement.SHARED, index % 10 != 0,
                        Compute(rng.choice([512_000, 768_000]), rng.choice([1, 2]) * 1_048_576),
                        rng.choice([250, 300]), state="active" if index % 10 else "cordoned")
            for index in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(2026)
    clusters = fleet(args.clusters, rng)
    signups = [(Placement.SHARED, TIERS[rng.choice(["low", "mid"])].footprint()) for _ in range(args.tenants)]
    times = []
    for run in range(args.runs):
        started = time.perf_counter()
        result = simulate(clusters, signups)
        times.append(time.perf_counter() - started)
        print(f"run {run + 1}: {times[-1]:.3f} s")
    placed = sum(name is not None for name in result.placed)
    fullest = max(max(c.used.cpu_m / c.capacity.cpu_m, c.used.memory_mi / c.capacity.memory_mi, c.tenants / c.slots)
                  for c in result.clusters.values())
    print(f"{args.tenants} signups over {args.clusters} clusters: median {statistics.median(times):.3f} s "
          f"({statistics.median(times) / args.tenants * 1e6:.1f} µs per signup); {placed} placed; "
          f"fullest cluster at {fullest:.1%} of a resource")


if __name__ == "__main__":
    main()
