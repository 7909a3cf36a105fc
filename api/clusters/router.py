"""/v1/clusters: the cluster registry for platform operators (auditors read it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status

from api.auth.dependencies import RequestContext, require_platform
from api.auth.roles import OPERATORS, READERS
from api.clusters import registry
from api.clusters.schemas import ClusterOut, DrainOut, RegisterCluster, TenantOnCluster, UpdateCluster, described
from api.db.models import Cluster, ClusterState
from api.problems import problems

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])

Operator = Annotated[RequestContext, require_platform(*OPERATORS)]
Reader = Annotated[RequestContext, require_platform(*READERS)]


NOT_FOUND = "`/problems/not-found`: no cluster of that name"
FORBIDDEN_WRITE = "`/problems/forbidden`: needs the platform role operator"
FORBIDDEN_READ = "`/problems/forbidden`: needs the platform role operator or auditor"
INVALID = "`/problems/invalid-cluster`: bad name, quantity or slots; `/problems/validation-error`"


def _out(ctx: RequestContext, cluster: Cluster) -> ClusterOut:
    (out,) = described(ctx.db, [cluster])
    return out


@router.get("", summary="Every registered cluster", responses=problems({403: FORBIDDEN_READ}))
def list_clusters(ctx: Reader) -> list[ClusterOut]:
    with ctx.db.begin():
        return described(ctx.db, registry.all_clusters(ctx.db))


@router.get("/{name}", summary="One cluster", responses=problems({403: FORBIDDEN_READ, 404: NOT_FOUND}))
def show_cluster(name: str, ctx: Reader) -> ClusterOut:
    with ctx.db.begin():
        return _out(ctx, registry.get(ctx.db, name))


@router.post(
    "", summary="Register a cluster (its kubeconfig goes to OpenBao); the same declaration again is a no-op",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ClusterOut, "description": "Registered already with these values (the kubeconfig "
                     "rewritten if it changed: a credential rotation)"},
               **problems({
                   403: FORBIDDEN_WRITE,
                   409: "`/problems/cluster-conflict`: registered with another kind, region or capacity",
                   422: f"{INVALID}; `/problems/invalid-kubeconfig`; `/problems/cluster-unreachable` (verify: the "
                        "API server did not answer /version)",
                   503: "`/problems/secrets-unavailable`: OpenBao cannot store the kubeconfig now",
               })},
)
def register_cluster(body: RegisterCluster, response: Response, ctx: Operator) -> ClusterOut:
    declared = registry.Declared.of(body.kind, body.region, body.cpu, body.memory, body.tenant_slots)
    with ctx.db.begin():
        cluster, created = registry.register(ctx.db, ctx.services.cluster_credentials, ctx.audit, body.name,
                                             declared, body.kubeconfig, verify=body.verify)
        if not created:
            response.status_code = status.HTTP_200_OK
        return _out(ctx, cluster)


@router.patch("/{name}", summary="Change a cluster's region or capacity",
              responses=problems({403: FORBIDDEN_WRITE, 404: NOT_FOUND, 422: INVALID}))
def update_cluster(name: str, body: UpdateCluster, ctx: Operator) -> ClusterOut:
    with ctx.db.begin():
        cluster = registry.update(ctx.db, ctx.audit, name, region=body.region, cpu=body.cpu, memory=body.memory,
                                  tenant_slots=body.tenant_slots)
        return _out(ctx, cluster)


@router.post("/{name}/cordon", summary="Cordon: the cluster receives no new tenant",
             responses=problems({403: FORBIDDEN_WRITE, 404: NOT_FOUND}))
def cordon_cluster(name: str, ctx: Operator) -> ClusterOut:
    with ctx.db.begin():
        return _out(ctx, registry.set_state(ctx.db, ctx.audit, name, ClusterState.CORDONED))


@router.post("/{name}/uncordon", summary="Uncordon: the cluster receives tenants again",
             responses=problems({403: FORBIDDEN_WRITE, 404: NOT_FOUND}))
def uncordon_cluster(name: str, ctx: Operator) -> ClusterOut:
    with ctx.db.begin():
        return _out(ctx, registry.set_state(ctx.db, ctx.audit, name, ClusterState.ACTIVE))


@router.post("/{name}/drain", summary="Drain: no new tenant; lists the tenants still there, to be moved",
             responses=problems({403: FORBIDDEN_WRITE, 404: NOT_FOUND}))
def drain_cluster(name: str, ctx: Operator) -> DrainOut:
    with ctx.db.begin():
        cluster = registry.set_state(ctx.db, ctx.audit, name, ClusterState.DRAINING)
        remaining = registry.tenants_on(ctx.db, name)
        return DrainOut(cluster=_out(ctx, cluster), tenants=[TenantOnCluster.of(t) for t in remaining])


@router.delete("/{name}", summary="Remove a cluster and its kubeconfig; refused while tenants live there",
               status_code=status.HTTP_204_NO_CONTENT,
               responses=problems({
                   403: FORBIDDEN_WRITE, 404: NOT_FOUND,
                   409: "`/problems/cluster-not-empty`: tenants still live there (`tenants`: how many)",
                   503: "`/problems/secrets-unavailable`: OpenBao cannot delete the kubeconfig now",
               }))
def remove_cluster(name: str, ctx: Operator) -> Response:
    with ctx.db.begin():
        registry.remove(ctx.db, ctx.services.cluster_credentials, ctx.audit, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
