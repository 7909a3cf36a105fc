"""Each tenant's Kubernetes role lives on the OpenBao auth mount of its own cluster
(components.naming.secrets_auth_mount): `kubernetes` for the platform's cluster eu1,
`kubernetes-<cluster>` for the others, as scripts/services.sh mounts them. Real OpenBao (the
local clusters' mounts), real PostgreSQL and job queue, the fake stack driver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import hvac.exceptions
import pytest
from sqlalchemy import select

from api.db.models import AuditRecord, Cluster, Operation, Tenant
from api.db.session import Scope
from api.services import Services
from components.naming import secrets_role
from tests.api import vault_support
from tests.api.conftest import add_cluster, run_queue, sign_up, signup_and_verify, signup_body
from tests.api.test_placement import only

LOCAL_MOUNTS = ("kubernetes", "kubernetes-eu2", "kubernetes-dc1")


def registered(services: Services, name: str, *, kind: str) -> str:
    """The local cluster `name` in this session's registry (added once)."""
    with services.db.transaction(Scope.system()) as session:
        if session.scalar(select(Cluster.id).where(Cluster.name == name)) is not None:
            return name
    return add_cluster(services, name, kind=kind, slots=100 if kind == "shared" else 1)


def role_on(mount: str, slug: str) -> dict | None:
    try:
        return vault_support.client().auth.kubernetes.read_role(secrets_role(slug), mount_point=mount)
    except hvac.exceptions.InvalidPath:
        return None


def holders(slug: str) -> list[str]:
    """The local mounts holding the tenant's role."""
    return [mount for mount in LOCAL_MOUNTS if role_on(mount, slug) is not None]


@pytest.fixture
def slugs() -> Iterator[list[str]]:
    """Tenants whose secrets and roles (on every mount) the test removes at its end, whatever happened."""
    created: list[str] = []
    yield created
    vault_support.remove_tenant_secrets(created)


def tenant_row(services: Services, tenant_id: str) -> Tenant:
    with services.db.transaction(Scope.system()) as session:
        row = session.get(Tenant, uuid.UUID(tenant_id))
        session.expunge(row)
        return row


def step_result(services: Services, operation_id: str, name: str) -> dict:
    with services.db.transaction(Scope.system()) as session:
        steps = session.get(Operation, uuid.UUID(operation_id)).steps
    return next(step for step in steps if step["name"] == name)["result"]


def audited(services: Services, tenant_id: str, action: str) -> list[dict]:
    with services.db.transaction(Scope.system()) as session:
        return [record.details for record in session.scalars(select(AuditRecord).where(
            AuditRecord.tenant_id == uuid.UUID(tenant_id), AuditRecord.action == action)).all()]


def delete(client, services: Services, tenant) -> None:
    assert client.delete(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).status_code == 202
    run_queue(services)
    assert tenant_row(services, tenant.tenant_id).status == "DELETED"


def test_a_tenant_of_the_platforms_cluster_gets_its_role_on_the_configured_mount(client, services, slugs):
    tenant = sign_up(client, services, tier="low")
    slugs.append(tenant.slug)
    assert tenant_row(services, tenant.tenant_id).placement == "shared:eu1"
    assert holders(tenant.slug) == ["kubernetes"]
    assert step_result(services, tenant.operation_id, "tenant_secrets")["mount"] == "kubernetes"


def test_a_tenant_on_a_second_cluster_gets_its_role_on_that_clusters_mount_and_delete_removes_it(
        client, services, slugs):
    with only(services, registered(services, "eu2", kind="shared")):
        tenant = sign_up(client, services, tier="low")
    slugs.append(tenant.slug)
    assert tenant_row(services, tenant.tenant_id).placement == "shared:eu2"
    assert holders(tenant.slug) == ["kubernetes-eu2"]  # none on eu1's mount, where eu2's tokens never pass
    role = role_on("kubernetes-eu2", tenant.slug)
    assert role["bound_service_account_namespaces"] == [f"tenant-{tenant.slug}-prod"]
    assert role["bound_service_account_names"] == ["cameleer-server"]
    assert step_result(services, tenant.operation_id, "tenant_secrets")["mount"] == "kubernetes-eu2"

    delete(client, services, tenant)
    assert holders(tenant.slug) == []
    (removed,) = audited(services, tenant.tenant_id, "operation.delete.secrets_removed")
    assert f"auth/kubernetes-eu2/role/tenant-{tenant.slug}" in removed["paths"]


def test_a_move_grants_on_the_new_clusters_mount_and_removes_the_role_from_the_old_one(client, services, slugs):
    with only(services, registered(services, "eu2", kind="shared")):
        tenant = sign_up(client, services, tier="mid")
    slugs.append(tenant.slug)
    assert holders(tenant.slug) == ["kubernetes-eu2"]

    with only(services, registered(services, "dc1", kind="dedicated")):
        accepted = client.post(f"/v1/tenants/{tenant.tenant_id}/tier", json={"tier": "high"},
                               headers=tenant.headers).json()
        run_queue(services)
        assert client.post(f"{accepted['operation']['url']}/confirm", headers=tenant.headers).status_code == 202
        run_queue(services)
    operation_id = accepted["operation"]["id"]
    assert tenant_row(services, tenant.tenant_id).placement == "dedicated:dc1"
    assert holders(tenant.slug) == ["kubernetes-dc1"]
    namespaces = role_on("kubernetes-dc1", tenant.slug)["bound_service_account_namespaces"]
    assert sorted(namespaces) == sorted(f"tenant-{tenant.slug}-{env}" for env in ("dev", "staging", "prod"))
    role = f"auth/kubernetes-eu2/role/tenant-{tenant.slug}"
    assert step_result(services, operation_id, "release_old_placement") == {"released": "shared:eu2",
                                                                            "role_removed": role}
    assert audited(services, tenant.tenant_id, "operation.move.secrets_role_removed") == [
        {"placement": "shared:eu2", "role": role}]

    delete(client, services, tenant)  # frees dc1 for the next session's test too
    assert holders(tenant.slug) == []


def test_removing_a_role_from_a_mount_again_removes_nothing(services, slugs):
    slug = f"t-{uuid.uuid4().hex[:10]}"
    slugs.append(slug)
    vault = services.tenant_secrets
    vault.grant(slug, ["prod"], "eu2")
    assert vault.revoke(slug, "eu2") == f"auth/kubernetes-eu2/role/tenant-{slug}"
    assert vault.revoke(slug, "eu2") is None  # a retried step removes nothing and audits nothing
    assert holders(slug) == []


def test_a_cluster_without_an_auth_mount_fails_the_signup_and_says_which_mount(client, services, slugs):
    cluster = add_cluster(services, f"nm-{uuid.uuid4().hex[:6]}", kind="shared")
    vault_support.disable_auth_mounts([f"kubernetes-{cluster}"])
    body = signup_body(tier="low")
    slugs.append(body["slug"])
    with only(services, cluster):
        accepted = signup_and_verify(client, services, body)
        run_queue(services)
    with services.db.transaction(Scope.system()) as session:
        operation = session.get(Operation, uuid.UUID(accepted["operation"]["id"]))
        status, steps = operation.status, operation.steps
    assert status == "FAILED"
    failed = next(step for step in steps if step["name"] == "tenant_secrets")
    assert failed["attempts"] == 1
    assert f"no Kubernetes auth mount auth/kubernetes-{cluster} for cluster '{cluster}'" in failed["errors"][-1]["message"]
