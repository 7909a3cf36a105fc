"""Placement in the control plane: the signup's `place` step over the cluster registry (real
PostgreSQL, the job queue, the fake stack driver). The rule itself is tests/unit/test_placement.py;
the same flows on real clusters are in tests/integration/test_clusters_engine.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY
from sqlalchemy import select, update

from api.clusters.capacity import resume_and_report
from api.db.models import AuditRecord, Cluster, Operation, Tenant
from api.db.session import Scope
from api.services import Services
from components.catalog import TIERS
from tests.api.conftest import add_cluster, login, pay_first_invoice, run_queue, sign_up, signup_and_verify, signup_body


@contextmanager
def cordoned(services: Services, *names: str) -> Iterator[None]:
    """The named clusters take no tenant inside the block."""
    _set_state(services, names, "cordoned")
    try:
        yield
    finally:
        _set_state(services, names, "active")


@contextmanager
def only(services: Services, *names: str) -> Iterator[None]:
    """Inside the block only the named clusters take tenants: every other active cluster
    of the session's registry (eu1, other tests' clusters) is cordoned."""
    with services.db.transaction(Scope.system()) as session:
        others = tuple(session.scalars(select(Cluster.name).where(
            Cluster.state == "active", Cluster.name.not_in(names))).all())
    with cordoned(services, *others):
        yield


def _set_state(services: Services, names: tuple[str, ...], state: str) -> None:
    with services.db.transaction(Scope.system()) as session:
        session.execute(update(Cluster).where(Cluster.name.in_(names)).values(state=state))


def _placement(services: Services, tenant_id: str) -> str:
    with services.db.transaction(Scope.system()) as session:
        return session.get(Tenant, uuid.UUID(tenant_id)).placement


def _operation(services: Services, operation_id: str) -> Operation:
    with services.db.transaction(Scope.system()) as session:
        operation = session.get(Operation, uuid.UUID(operation_id))
        session.expunge(operation)
        return operation


def _waiting_gauge(kind: str) -> float:
    return REGISTRY.get_sample_value("cameleer_operations_awaiting_capacity", {"placement": kind})


def test_a_low_signup_lands_on_the_emptier_shared_cluster_and_a_cordoned_one_gets_nothing(client, services, driver):
    busy, quiet, empty = (add_cluster(services, f"pl-{name}-{uuid.uuid4().hex[:6]}", kind="shared", cpu_m=16_000,
                                      memory_mi=32_768, slots=10) for name in ("busy", "quiet", "empty"))
    with only(services, busy, quiet, empty):
        first = sign_up(client, services, tier="mid")  # 3 CPU: busy, quiet and empty tie; busy is first by name
        assert _placement(services, first.tenant_id) == f"shared:{busy}"
        with cordoned(services, empty):
            second = sign_up(client, services, tier="low")
            assert _placement(services, second.tenant_id) == f"shared:{quiet}"
            third = sign_up(client, services, tier="low")  # quiet now holds 1 CPU, busy 3
            assert _placement(services, third.tenant_id) == f"shared:{quiet}"
    assert (uuid.UUID(first.tenant_id), f"shared:{busy}") in driver.stacks


def test_with_no_room_the_signup_waits_with_the_reason_then_resumes_where_it_was_placed(client, services, driver):
    small = add_cluster(services, f"pl-small-{uuid.uuid4().hex[:6]}", kind="shared", cpu_m=500, memory_mi=1024, slots=5)
    with only(services, small):
        body = signup_body(tier="low")
        accepted = signup_and_verify(client, services, body)
        run_queue(services)
        operation = _operation(services, accepted["operation"]["id"])
        assert operation.status == "AWAITING_CAPACITY"
        place = operation.steps[0]
        assert place["name"] == "place" and place["status"] == "waiting"
        assert f"{small} has 500m CPU, 1Gi memory and 5 tenant slots free" in place["note"]
        assert "eu1 is cordoned" in place["note"] and "pl-" in place["note"]
        assert _placement(services, accepted["tenant"]["id"]) == "shared"
        assert driver.calls == []

        assert resume_and_report(services) == 0  # nothing fits yet: nothing resumed
        assert _waiting_gauge("shared") >= 1
        with services.db.transaction(Scope.system()) as session:
            session.execute(update(Cluster).where(Cluster.name == small).values(capacity_cpu_m=8_000,
                                                                                  capacity_memory_mi=16_384))
        assert resume_and_report(services) == 1
        run_queue(services)
    tenant_id = accepted["tenant"]["id"]
    assert _placement(services, tenant_id) == f"shared:{small}"
    assert client.get(f"/v1/tenants/{tenant_id}", headers=login(client, body["owner_email"])).json()["status"] == "ACTIVE"
    with services.db.transaction(Scope.system()) as session:
        placed = session.scalars(select(AuditRecord).where(AuditRecord.action == "tenant.placed",
                                                          AuditRecord.tenant_id == uuid.UUID(tenant_id))).all()
        assert [event.details["placement"] for event in placed] == [f"shared:{small}"]


def test_a_resumed_signup_never_moves(client, services, driver):
    first_choice = add_cluster(services, f"pl-a-{uuid.uuid4().hex[:6]}", kind="shared", cpu_m=16_000,
                               memory_mi=32_768, slots=10)
    body = signup_body(tier="mid")  # mid has no trial: the signup stops at the payment step
    with only(services, first_choice):
        accepted = signup_and_verify(client, services, body)
        run_queue(services)
    assert _operation(services, accepted["operation"]["id"]).status == "AWAITING_PAYMENT"
    assert _placement(services, accepted["tenant"]["id"]) == f"shared:{first_choice}"
    with cordoned(services, first_choice):  # eu1, empty and active, would win a new placement now
        pay_first_invoice(client, services, uuid.UUID(accepted["tenant"]["id"]))
    assert _placement(services, accepted["tenant"]["id"]) == f"shared:{first_choice}"
    assert _operation(services, accepted["operation"]["id"]).status == "SUCCEEDED"


def test_a_business_signup_gets_a_dedicated_cluster_of_its_own_and_the_next_one_waits(client, services, driver):
    cluster = add_cluster(services, f"dc-{uuid.uuid4().hex[:8]}", kind="dedicated")
    with only(services, cluster):
        first = sign_up(client, services, tier="business")
        assert _placement(services, first.tenant_id) == f"dedicated:{cluster}"
        with services.db.transaction(Scope.system()) as session:
            assert session.scalar(select(Cluster.baseline_stack).where(Cluster.name == cluster)) == f"dedicated-{first.slug}"

        second = signup_and_verify(client, services, signup_body(tier="business"))
        run_queue(services)
        waiting = _operation(services, second["operation"]["id"])
        assert waiting.status == "AWAITING_CAPACITY"
        assert f"{cluster} already serves a tenant" in waiting.steps[0]["note"]
        assert resume_and_report(services) == 0
        assert _waiting_gauge("dedicated") >= 1

        another = add_cluster(services, f"dc-{uuid.uuid4().hex[:8]}", kind="dedicated")
        assert resume_and_report(services) == 1
        run_queue(services)
    assert _placement(services, second["tenant"]["id"]) == f"dedicated:{another}"



def test_the_registry_shows_what_is_reserved_and_free_on_each_cluster(client, services, operator_headers):
    cluster = add_cluster(services, f"pl-show-{uuid.uuid4().hex[:6]}", kind="shared", cpu_m=16_000,
                          memory_mi=32_768, slots=10)
    with only(services, cluster):
        sign_up(client, services, tier="mid")
    shown = client.get(f"/v1/clusters/{cluster}", headers=operator_headers).json()
    mid = TIERS["mid"].footprint()
    assert (shown["tenants"], shown["reserved_cpu_m"], shown["reserved_memory_mi"]) == (1, mid.cpu_m, mid.memory_mi)
    assert (shown["free_cpu_m"], shown["free_memory_mi"], shown["free_slots"]) == (
        16_000 - mid.cpu_m, 32_768 - mid.memory_mi, 9)
    listed = {c["name"]: c for c in client.get("/v1/clusters", headers=operator_headers).json()}
    assert listed[cluster] == shown


def test_a_move_back_to_shared_lands_by_the_rule_and_frees_the_dedicated_cluster(client, services, driver,
                                                                                  operator_headers):
    dedicated = add_cluster(services, f"dc-{uuid.uuid4().hex[:8]}", kind="dedicated")
    shared = add_cluster(services, f"pl-back-{uuid.uuid4().hex[:6]}", kind="shared", cpu_m=16_000,
                         memory_mi=32_768, slots=10)
    with only(services, dedicated, shared):
        tenant = sign_up(client, services, tier="business")
        assert _placement(services, tenant.tenant_id) == f"dedicated:{dedicated}"
        accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "mid"},
                               headers=tenant.headers).json()
        run_queue(services)
        waiting = _operation(services, accepted["operation"]["id"])
        assert waiting.status == "AWAITING_CONFIRMATION"
        assert waiting.params["placement"] == f"shared:{shared}"
        assert client.post(f"/v1/operations/{waiting.id}/confirm", headers=operator_headers).status_code == 202
        run_queue(services)
    assert _operation(services, accepted["operation"]["id"]).status == "SUCCEEDED"
    assert _placement(services, tenant.tenant_id) == f"shared:{shared}"
    tenant_uuid = uuid.UUID(tenant.tenant_id)
    assert (tenant_uuid, f"shared:{shared}") in driver.stacks
    assert (tenant_uuid, f"dedicated:{dedicated}") not in driver.stacks
    with services.db.transaction(Scope.system()) as session:
        assert session.scalar(select(Cluster.baseline_stack).where(Cluster.name == dedicated)) is None
