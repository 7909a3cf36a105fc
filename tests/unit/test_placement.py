"""The placement rule (api/clusters/placement.py): a pure function, tested without I/O."""

from __future__ import annotations

import random

import pytest

from api.clusters.placement import ClusterLoad, NoCluster, choose_cluster, simulate
from components.catalog import TIERS, Compute, Placement

LOW, MID = TIERS["low"].footprint(), TIERS["mid"].footprint()
BUSINESS = TIERS["business"].footprint()


def shared(name: str, cpu_m: int = 96_000, memory_mi: int = 393_216, slots: int = 100, *,
           used: Compute = Compute(0, 0), tenants: int = 0, state: str = "active") -> ClusterLoad:
    return ClusterLoad(name, Placement.SHARED, state == "active", Compute(cpu_m, memory_mi), slots,
                       used, tenants, state)


def dedicated(name: str, cpu_m: int, memory_mi: int, *, tenants: int = 0, state: str = "active") -> ClusterLoad:
    return ClusterLoad(name, Placement.DEDICATED, state == "active", Compute(cpu_m, memory_mi), 1,
                       Compute(0, 0), tenants, state)


def test_a_shared_tenant_goes_to_the_emptier_cluster():
    busy = shared("eu1", used=Compute(60_000, 100_000), tenants=30)
    quiet = shared("eu2", used=Compute(10_000, 20_000), tenants=5)
    assert choose_cluster([busy, quiet], Placement.SHARED, LOW) == "eu2"


def test_emptier_means_the_scarcest_resource_share_not_absolute_amounts():
    # big has more CPU free in absolute terms, but only 10% of its memory; small has 50% of everything.
    big = shared("big", cpu_m=400_000, memory_mi=1_000_000, used=Compute(100_000, 900_000))
    small = shared("small", cpu_m=50_000, memory_mi=100_000, used=Compute(25_000, 50_000))
    assert choose_cluster([big, small], Placement.SHARED, LOW) == "small"


def test_slots_count_as_capacity():
    nearly_full = shared("eu1", slots=10, tenants=9)
    roomy = shared("eu2", slots=10, tenants=2, used=Compute(50_000, 200_000))
    assert choose_cluster([nearly_full, roomy], Placement.SHARED, LOW) == "eu2"


def test_a_tie_goes_to_the_first_name():
    assert choose_cluster([shared("eu10"), shared("eu2"), shared("eu1")], Placement.SHARED, LOW) == "eu1"


@pytest.mark.parametrize("state", ["cordoned", "draining"])
def test_a_cordoned_or_draining_cluster_receives_nothing_even_when_emptiest(state):
    empty = shared("eu2", state=state)
    busy = shared("eu1", used=Compute(80_000, 300_000), tenants=80)
    assert choose_cluster([empty, busy], Placement.SHARED, LOW) == "eu1"
    answer = choose_cluster([empty], Placement.SHARED, LOW)
    assert isinstance(answer, NoCluster) and f"eu2 is {state}" in answer.reason


def test_a_full_cluster_receives_nothing_and_the_reason_says_what_is_left():
    full = shared("eu1", cpu_m=4_000, memory_mi=8_192, used=Compute(2_000, 4_096), tenants=1)
    answer = choose_cluster([full], Placement.SHARED, MID)
    assert isinstance(answer, NoCluster)
    assert "needing 3 CPU, 6Gi memory" in answer.reason
    assert "eu1 has 2 CPU, 4Gi memory and 99 tenant slots free" in answer.reason


def test_a_tenant_that_fits_exactly_is_placed():
    exact = shared("eu1", cpu_m=LOW.cpu_m, memory_mi=LOW.memory_mi, slots=1)
    assert choose_cluster([exact], Placement.SHARED, LOW) == "eu1"


def test_no_registered_cluster_says_how_to_register_one():
    answer = choose_cluster([dedicated("dc1", 64_000, 131_072)], Placement.SHARED, LOW)
    assert isinstance(answer, NoCluster) and "no shared cluster is registered" in answer.reason
    assert "cameleer-clusters register" in answer.reason


def test_a_dedicated_tenant_gets_the_smallest_empty_dedicated_cluster_that_fits():
    clusters = [dedicated("huge", 256_000, 1_048_576), dedicated("taken", 32_000, 65_536, tenants=1),
                dedicated("small", 8_000, 16_384), dedicated("right", 32_000, 65_536), shared("eu1")]
    assert choose_cluster(clusters, Placement.DEDICATED, BUSINESS) == "right"


def test_a_dedicated_tenant_waits_when_every_dedicated_cluster_is_taken():
    answer = choose_cluster([dedicated("dc1", 64_000, 131_072, tenants=1), shared("eu1")],
                            Placement.DEDICATED, BUSINESS)
    assert isinstance(answer, NoCluster) and "dc1 already serves a tenant" in answer.reason
    assert "eu1" not in answer.reason


def test_ten_thousand_tenants_over_fifty_clusters_never_overfill_one():
    rng = random.Random(12)
    clusters = [shared(f"c{index:02d}", cpu_m=rng.choice([512_000, 768_000]), memory_mi=rng.choice([1, 2]) * 1_048_576,
                       slots=rng.choice([250, 300]), state="active" if index % 10 else "cordoned")
                for index in range(50)]
    tenants = [(Placement.SHARED, rng.choice([LOW, MID])) for _ in range(10_000)]
    result = simulate(clusters, tenants)
    placed = [name for name in result.placed if name is not None]
    assert len(placed) > 9_000  # the fleet is big enough for most of them
    for load in result.clusters.values():
        assert load.used.cpu_m <= load.capacity.cpu_m and load.used.memory_mi <= load.capacity.memory_mi
        assert load.tenants <= load.slots
        if load.state == "cordoned":
            assert load.tenants == 0
    # a tenant left out is left out because nothing could take it, not by mistake
    unplaced = [need for (_, need), name in zip(tenants, result.placed) if name is None]
    for need in unplaced:
        assert isinstance(choose_cluster(result.clusters.values(), Placement.SHARED, need), NoCluster)


def test_footprint_sums_the_quota_requests_of_the_environments():
    low = TIERS["low"]
    assert low.footprint() == low.quota_for("prod").requests
    mid = TIERS["mid"]
    assert mid.footprint(("prod",)) == mid.quota_for("prod").requests
    assert mid.footprint().cpu_m == sum(mid.quota_for(env).requests.cpu_m for env in mid.standard_environments)
