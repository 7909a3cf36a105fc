"""`cameleer-clusters`: the cluster registry for platform operators.

    cameleer-clusters list [--json]
    cameleer-clusters show NAME [--json]
    cameleer-clusters register NAME --kind shared|dedicated --region R --cpu 64 --memory 256Gi
                             [--slots N] --kubeconfig FILE [--no-verify]
    cameleer-clusters set-capacity NAME [--region R] [--cpu Q] [--memory Q] [--slots N]
    cameleer-clusters cordon|uncordon|drain|remove NAME

It works on the platform database (the system role, CAMELEER_DATABASE_SYSTEM_URL) and
OpenBao (VAULT_ADDR, VAULT_TOKEN) through the same functions as /v1/clusters, audited as
$CAMELEER_ACTOR (default user@host). Exit codes: 0 success; 1 error (unknown cluster, not
empty, bad kubeconfig, ...).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from components.catalog import cpu as cpu_quantity
from components.catalog import memory as memory_quantity

from api.audit.chain import AuditMeta, append
from api.clusters import registry
from api.clusters.credentials import ClusterCredentials
from api.clusters.schemas import TenantOnCluster, described
from api.db.models import Cluster, ClusterKind, ClusterState
from api.db.session import Database, Scope, ScopedSession
from api.problems import Problem
from api.settings import ServiceNotConfigured, get_settings
from api.vault import SecretsUnavailable, VaultConnection

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
out = Console()
err = Console(stderr=True)
Json = Annotated[bool, typer.Option("--json", help="One JSON document on stdout")]
Name = Annotated[str, typer.Argument(help="The cluster's name")]


class Registry:
    """One transaction's session, the kubeconfig store and the audit of this CLI's actor."""

    def __init__(self, session: ScopedSession, credentials: ClusterCredentials) -> None:
        self.session = session
        self.credentials = credentials
        self._meta = AuditMeta(os.environ.get("CAMELEER_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}",
                               request_id="cameleer-clusters")

    def audit(self, action: str, resource: str, **details: object) -> None:
        append(self.session, self._meta, action, resource, details=details)


@contextmanager
def _registry() -> Iterator[Registry]:
    """A system-scope transaction; any refusal is printed and exits 1."""
    try:
        settings = get_settings()
        db = Database.from_settings(settings)
        credentials = ClusterCredentials(VaultConnection.from_settings(settings))
    except ServiceNotConfigured as exc:
        _fail(str(exc))
    try:
        with db.transaction(Scope.system()) as session:
            yield Registry(session, credentials)
    except Problem as exc:
        _fail(exc.detail or exc.code)
    except SecretsUnavailable as exc:
        _fail(str(exc))
    finally:
        db.dispose()


def _fail(message: str) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _documents(reg: Registry, clusters: list[Cluster]) -> list[dict]:
    return [out.model_dump(mode="json") for out in described(reg.session, clusters)]


def _table(documents: list[dict]) -> Table:
    table = Table("name", "kind", "region", "state", "cpu (free)", "memory (free)", "slots (free)", "tenants",
                  "baseline stack")
    for d in documents:
        table.add_row(d["name"], d["kind"], d["region"], d["state"],
                      f"{cpu_quantity(d['capacity_cpu_m'])} ({cpu_quantity(max(d['free_cpu_m'], 0))})",
                      f"{memory_quantity(d['capacity_memory_mi'])} ({memory_quantity(max(d['free_memory_mi'], 0))})",
                      f"{d['tenant_slots']} ({d['free_slots']})", str(d["tenants"]), d["baseline_stack"] or "-")
    return table


def _emit(documents: list[dict] | dict, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(documents))
    else:
        out.print(_table(documents if isinstance(documents, list) else [documents]))


def _one(reg: Registry, cluster: Cluster) -> dict:
    (document,) = _documents(reg, [cluster])
    return document


@app.command("list")
def list_clusters(as_json: Json = False) -> None:
    """Every registered cluster."""
    with _registry() as reg:
        documents = _documents(reg, registry.all_clusters(reg.session))
    _emit(documents, as_json)


@app.command()
def show(name: Name, as_json: Json = False) -> None:
    """One cluster."""
    with _registry() as reg:
        document = _one(reg, registry.get(reg.session, name))
    _emit(document, as_json)


@app.command()
def register(
    name: Name,
    kind: Annotated[ClusterKind, typer.Option(help="shared or dedicated")],
    region: Annotated[str, typer.Option()],
    cpu: Annotated[str, typer.Option(help="CPU capacity, a Kubernetes quantity: 64, 500m")],
    memory: Annotated[str, typer.Option(help="Memory capacity, a Kubernetes quantity: 256Gi")],
    kubeconfig: Annotated[Path, typer.Option(help="The cluster's kubeconfig file (stored in OpenBao)")],
    slots: Annotated[int | None, typer.Option(help="Tenant slots (a dedicated cluster has 1)")] = None,
    verify: Annotated[bool, typer.Option(help="Reach the API server once before registering")] = True,
) -> None:
    """Register a cluster; the same declaration again changes nothing but a rotated kubeconfig."""
    try:
        content = kubeconfig.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read the kubeconfig file {str(kubeconfig)!r}: {type(exc).__name__}")
    with _registry() as reg:
        declared = registry.Declared.of(kind.value, region, cpu, memory, slots)
        cluster, created = registry.register(reg.session, reg.credentials, reg.audit, name, declared, content,
                                             verify=verify)
        document = _one(reg, cluster)
    err.print(f"{'registered' if created else 'already registered'}: {name}")
    _emit(document, False)


@app.command("set-capacity")
def set_capacity(
    name: Name,
    region: Annotated[str | None, typer.Option()] = None,
    cpu: Annotated[str | None, typer.Option(help="CPU capacity: 64, 500m")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory capacity: 256Gi")] = None,
    slots: Annotated[int | None, typer.Option(help="Tenant slots")] = None,
) -> None:
    """Change a cluster's region or capacity (what is left out keeps its value)."""
    with _registry() as reg:
        cluster = registry.update(reg.session, reg.audit, name, region=region, cpu=cpu, memory=memory,
                                  tenant_slots=slots)
        document = _one(reg, cluster)
    _emit(document, False)


def _set_state(name: str, state: ClusterState) -> None:
    with _registry() as reg:
        document = _one(reg, registry.set_state(reg.session, reg.audit, name, state))
    _emit(document, False)


@app.command()
def cordon(name: Name) -> None:
    """The cluster receives no new tenant."""
    _set_state(name, ClusterState.CORDONED)


@app.command()
def uncordon(name: Name) -> None:
    """The cluster receives tenants again."""
    _set_state(name, ClusterState.ACTIVE)


@app.command()
def drain(name: Name, as_json: Json = False) -> None:
    """No new tenant; lists the tenants still there, to be moved."""
    with _registry() as reg:
        registry.set_state(reg.session, reg.audit, name, ClusterState.DRAINING)
        remaining = [TenantOnCluster.of(t).model_dump(mode="json") for t in registry.tenants_on(reg.session, name)]
    if as_json:
        out.print_json(json.dumps(remaining))
        return
    table = Table("tenant", "tier", "status", "placement",
                  title=f"{name}: draining, {len(remaining)} tenant(s) to move")
    for t in remaining:
        table.add_row(t["slug"], t["tier"], t["status"], t["placement"])
    out.print(table)


@app.command()
def remove(name: Name) -> None:
    """Remove the cluster and its kubeconfig; refused while tenants live there."""
    with _registry() as reg:
        registry.remove(reg.session, reg.credentials, reg.audit, name)
    out.print(f"removed: {name}")


if __name__ == "__main__":
    app()
