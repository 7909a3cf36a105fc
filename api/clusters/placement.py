"""Where a tenant runs: the placement rule, a pure function over the cluster registry.

A shared-tier tenant goes to the active shared cluster with the most capacity left after
its quota. "Most" compares clusters of any size: a cluster's headroom is the smallest of its
free CPU, free memory and free tenant slots, each as a share of what it declares, and the
cluster with the largest headroom wins (ties: the name). A dedicated-tier tenant gets an
active dedicated cluster of its own, with no tenant on it yet: the smallest that fits, so a
big cluster stays free for a big customer.

A cluster's free capacity is its declared capacity minus the footprints (sum of quota
requests, `Tier.footprint`) of the tenants placed there. A cordoned or draining cluster, or
one the tenant would overfill, is never chosen. When no cluster fits, the answer is a
`NoCluster` whose reason names each cluster and why it was passed over.

No I/O here: `api.clusters.assign` reads the registry and stores the choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from components.catalog import Compute, Placement, cpu, memory


@dataclass(frozen=True)
class ClusterLoad:
    """One registered cluster as placement sees it: what it declares and what is placed there."""

    name: str
    kind: Placement
    accepts_tenants: bool
    capacity: Compute
    slots: int
    used: Compute = Compute(0, 0)
    tenants: int = 0
    state: str = "active"

    def free_after(self, need: Compute) -> tuple[int, int, int]:
        """CPU (millicores), memory (MiB) and tenant slots left once `need` is placed here."""
        return (self.capacity.cpu_m - self.used.cpu_m - need.cpu_m,
                self.capacity.memory_mi - self.used.memory_mi - need.memory_mi,
                self.slots - self.tenants - 1)

    def headroom_after(self, need: Compute) -> float:
        """The smallest free share (CPU, memory, slots) once `need` is placed here."""
        cpu_left, memory_left, slots_left = self.free_after(need)
        return min(cpu_left / self.capacity.cpu_m, memory_left / self.capacity.memory_mi, slots_left / self.slots)

    def with_tenant(self, need: Compute) -> ClusterLoad:
        used = Compute(self.used.cpu_m + need.cpu_m, self.used.memory_mi + need.memory_mi)
        return replace(self, used=used, tenants=self.tenants + 1)

    def passed_over(self, kind: Placement, need: Compute) -> str | None:
        """Why this cluster cannot take a tenant of `kind` needing `need`; None if it can."""
        if self.kind is not kind:
            return f"is a {self.kind.value} cluster"
        if not self.accepts_tenants:
            return f"is {self.state}"
        if kind is Placement.DEDICATED and self.tenants:
            return "already serves a tenant"
        cpu_left, memory_left, slots_left = self.free_after(need)
        if min(cpu_left, memory_left, slots_left) < 0:
            free = self.free_after(Compute(0, 0))
            return (f"has {cpu(max(free[0], 0))} CPU, {memory(max(free[1], 0))} memory and "
                    f"{max(free[2] + 1, 0)} tenant slots free")
        return None


@dataclass(frozen=True)
class NoCluster:
    """No registered cluster can take the tenant now; `reason` says why, cluster by cluster."""

    reason: str


def choose_cluster(clusters: Iterable[ClusterLoad], kind: Placement, need: Compute) -> str | NoCluster:
    """The name of the cluster a new tenant of `kind` needing `need` goes to (see the module)."""
    candidates, reasons = [], []
    for cluster in clusters:
        why_not = cluster.passed_over(kind, need)
        if why_not is None:
            candidates.append(cluster)
        elif cluster.kind is kind:
            reasons.append(f"{cluster.name} {why_not}")
    if candidates:
        return _best(candidates, kind, need).name
    wanted = f"{cpu(need.cpu_m)} CPU, {memory(need.memory_mi)} memory"
    if not reasons:
        return NoCluster(f"no {kind.value} cluster is registered (the tenant needs {wanted}); "
                         f"an operator registers one with `cameleer-clusters register`")
    return NoCluster(f"no {kind.value} cluster can take a tenant needing {wanted}: " + "; ".join(reasons))


def _best(candidates: list[ClusterLoad], kind: Placement, need: Compute) -> ClusterLoad:
    if kind is Placement.DEDICATED:
        return min(candidates, key=lambda c: (c.capacity.cpu_m, c.capacity.memory_mi, c.name))
    return min(candidates, key=lambda c: (-c.headroom_after(need), c.name))


@dataclass(frozen=True)
class Simulation:
    placed: tuple[str | None, ...]
    clusters: dict[str, ClusterLoad]


def simulate(clusters: Sequence[ClusterLoad], tenants: Sequence[tuple[Placement, Compute]]) -> Simulation:
    """Place `tenants` one after another with `choose_cluster`, as signups would arrive."""
    loads = {cluster.name: cluster for cluster in clusters}
    placed: list[str | None] = []
    for kind, need in tenants:
        choice = choose_cluster(loads.values(), kind, need)
        if isinstance(choice, NoCluster):
            placed.append(None)
            continue
        loads[choice] = loads[choice].with_tenant(need)
        placed.append(choice)
    return Simulation(tuple(placed), loads)
