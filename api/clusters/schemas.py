"""Request and response bodies of /v1/clusters. No body carries a kubeconfig back out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from sqlalchemy.orm import Session

from api.clusters import registry
from api.clusters.assign import cluster_loads
from api.clusters.placement import ClusterLoad
from api.db.models import CLUSTER_NAME_PATTERN, Cluster, ClusterKind, ClusterState, Tenant
from components.catalog import Compute

Quantity = Annotated[str, Field(min_length=1, max_length=32)]
Slots = Annotated[int, Field(ge=1, le=1_000_000)]
Region = Annotated[str, Field(min_length=1, max_length=64)]


class RegisterCluster(BaseModel):
    name: Annotated[str, Field(pattern=CLUSTER_NAME_PATTERN, examples=["shared-eu2"])]
    kind: ClusterKind
    region: Region
    cpu: Annotated[Quantity, Field(description="Kubernetes CPU quantity: '64', '500m'", examples=["64"])]
    memory: Annotated[Quantity, Field(description="Kubernetes memory quantity: '256Gi'", examples=["256Gi"])]
    tenant_slots: Annotated[Slots | None, Field(
        description="Required for a shared cluster; 1 for a dedicated one")] = None
    kubeconfig: Annotated[str, Field(
        min_length=1, max_length=256 * 1024, repr=False,
        description="The kubeconfig's content (self-contained). Stored in OpenBao, never returned")]
    verify: Annotated[bool, Field(description="Reach the API server's /version once before registering")] = True


class UpdateCluster(BaseModel):
    region: Region | None = None
    cpu: Quantity | None = None
    memory: Quantity | None = None
    tenant_slots: Slots | None = None


class ClusterOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: ClusterKind
    region: str
    capacity_cpu_m: int
    capacity_memory_mi: int
    tenant_slots: int
    state: ClusterState
    credentials_ref: Annotated[str, Field(description="<mount>/<path> of the kubeconfig in OpenBao")]
    baseline_stack: str | None
    created_at: datetime
    updated_at: datetime
    tenants: Annotated[int, Field(description="Tenants placed on it, deleted ones excepted")]
    reserved_cpu_m: Annotated[int, Field(description="The quota requests of its tenants and of moves headed there")]
    reserved_memory_mi: int
    free_cpu_m: Annotated[int, Field(description="Capacity minus reservations: what placement compares")]
    free_memory_mi: int
    free_slots: int

    @classmethod
    def of(cls, cluster: Cluster, tenants: int, load: ClusterLoad) -> ClusterOut:
        fields = {column.key: getattr(cluster, column.key) for column in Cluster.__table__.columns}
        free_cpu_m, free_memory_mi, free_slots = load.free_after(Compute(0, 0))
        return cls(**fields, tenants=tenants, reserved_cpu_m=load.used.cpu_m, reserved_memory_mi=load.used.memory_mi,
                   free_cpu_m=free_cpu_m, free_memory_mi=free_memory_mi, free_slots=free_slots + 1)


def described(session: Session, clusters: list[Cluster]) -> list[ClusterOut]:
    """The clusters as /v1/clusters and cameleer-clusters show them: with the tenants placed
    there and the loads placement compares."""
    counts = registry.tenant_counts(session)
    return [ClusterOut.of(cluster, counts.get(cluster.name, 0), load)
            for cluster, load in zip(clusters, cluster_loads(session, clusters))]


class TenantOnCluster(BaseModel):
    id: uuid.UUID
    slug: str
    tier: str
    status: str
    placement: str

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOnCluster:
        return cls.model_validate(tenant, from_attributes=True)


class DrainOut(BaseModel):
    cluster: ClusterOut
    tenants: Annotated[list[TenantOnCluster], Field(description="The tenants still there, to be moved")]
