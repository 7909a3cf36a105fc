"""The drift pre-check: every stack against its cluster without starting the engine.

For each stack, the resources of its last checkpoint (checkpoints.py) are compared with
the live objects (livestate.py: one list per kind and cluster, for all stacks at once) and
with the tenant databases (one connection per database):

* A Kubernetes object is compared by the rule of the provider's own refresh
  (pulumi-kubernetes `Read`: the live object pruned to the shape of the recorded inputs,
  then compared with them): only the fields the program declared count; fields nobody
  declared, fields of other managers, status and server-set metadata are no drift. An
  object that is gone, or being deleted, is drift.
* A declared value that is a secret (a Secret's `data`) is stored encrypted in the
  checkpoint, so it is proven unchanged instead of compared: either the object's
  resourceVersion is still the one recorded, or the platform's field manager still owns
  each of those fields and no other manager owns any of them (any write by another client,
  `kubectl edit`, `patch`, `replace`, `apply`, leaves its manager on the fields it set).
* A tenant schema is observed with the same query as the provider's `read`
  (components/providers/postgres.py) and compared with the observation recorded.

The verdict is one-sided on purpose: `clean` means the engine's refresh would find nothing;
anything the pre-check cannot prove (a resource type it does not know, a cluster or
database it cannot reach, a stack with pending operations) is a finding, and the stack goes
to the engine. Over-reporting costs an engine run; under-reporting would hide drift.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.naming import MANAGED_BY, MANAGED_BY_LABEL

from .changes import format_path, is_encrypted
from .checkpoints import Checkpoint
from .livestate import ClusterReader, Kind, ObjectKey

TENANT_SCHEMA_TYPE = "pulumi-python:dynamic/postgres:TenantSchema"
# Resources whose refresh reads nothing outside the state: nothing to compare.
STATE_ONLY_TYPES = frozenset({"pulumi:pulumi:Stack", "pulumi-python:dynamic/random:RandomPassword"})
CHANGED, DELETED, UNVERIFIED = "changed", "deleted", "unverified"


@dataclass(frozen=True)
class Finding:
    """Why the pre-check hands a stack to the engine."""

    resource: str  # the resource's name in the stack, or "" for the whole stack
    what: str  # changed | deleted | unverified
    paths: tuple[str, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "what": self.what, "paths": list(self.paths), "detail": self.detail}

    def __str__(self) -> str:
        where = f"{self.resource}: " if self.resource else ""
        return where + (f"{self.what} {', '.join(self.paths)}" if self.paths else self.detail or self.what)


@dataclass(frozen=True)
class StackVerdict:
    stack: str
    findings: tuple[Finding, ...]
    compared: int  # resources compared with their live counterpart

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def reason(self) -> str:
        return "; ".join(str(f) for f in self.findings[:5]) + (" …" if len(self.findings) > 5 else "")

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "compared": self.compared, "findings": [f.to_dict() for f in self.findings]}


@dataclass
class PrecheckRun:
    verdicts: dict[str, StackVerdict]
    duration_seconds: float = 0.0
    requests: int = 0  # Kubernetes API requests
    objects: int = 0  # live objects read

    def flagged(self) -> list[str]:
        return [stack for stack, verdict in self.verdicts.items() if not verdict.clean]

    def to_dict(self) -> dict[str, Any]:
        return {"duration_seconds": round(self.duration_seconds, 3), "requests": self.requests,
                "objects": self.objects, "stacks": len(self.verdicts), "flagged": len(self.flagged())}


# --------------------------------------------------------------------------- declarations

@dataclass(frozen=True)
class DeclaredObject:
    resource: str
    key: ObjectKey
    cluster: str | None
    inputs: dict[str, Any]
    # What the secret rule needs of the object as the engine last saw it (its outputs):
    # resourceVersion, managedFields, the field manager. Nothing else is kept.
    recorded: dict[str, Any]

    @property
    def selectable(self) -> bool:
        """Whether the managed-by label selector finds the object (it declares the label)."""
        labels = (self.inputs.get("metadata") or {}).get("labels") or {}
        return labels.get(MANAGED_BY_LABEL) == MANAGED_BY


@dataclass(frozen=True)
class DeclaredSchema:
    resource: str
    identifier: str
    database: str
    observed: dict[str, Any] | None


@dataclass
class StackDeclaration:
    stack: str
    objects: list[DeclaredObject] = field(default_factory=list)
    schemas: list[DeclaredSchema] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # what cannot be checked at all
    pending: bool = False  # an operation is running, or was interrupted


def declaration_of(checkpoint: Checkpoint) -> StackDeclaration:
    declaration = StackDeclaration(checkpoint.stack, pending=checkpoint.pending_operations)
    if checkpoint.pending_operations:
        declaration.findings.append(Finding("", UNVERIFIED, detail="an interrupted operation left pending operations"))
    clusters = {r["urn"]: (r.get("inputs") or {}).get("clusterIdentifier")
                for r in checkpoint.resources if r["type"] == "pulumi:providers:kubernetes"}
    for resource in checkpoint.resources:
        name, type_ = resource["urn"].rsplit("::", 1)[-1], resource["type"]
        if not resource.get("custom") or type_.startswith("pulumi:providers:") or type_ in STATE_ONLY_TYPES:
            continue
        if type_.startswith("kubernetes:"):
            inputs, outputs = resource.get("inputs") or {}, resource.get("outputs") or {}
            provider = (resource.get("provider") or "").rsplit("::", 1)[0]
            metadata = inputs.get("metadata") or {}
            key = ObjectKey(inputs.get("apiVersion", ""), inputs.get("kind", ""),
                            metadata.get("namespace") or "", metadata.get("name") or "")
            declaration.objects.append(DeclaredObject(name, key, clusters.get(provider), inputs, _recorded(outputs)))
        elif type_ == TENANT_SCHEMA_TYPE:
            outputs = resource.get("outputs") or {}
            declaration.schemas.append(DeclaredSchema(name, resource.get("id") or outputs.get("identifier", ""),
                                                      outputs.get("database", ""), outputs.get("observed")))
        else:
            declaration.findings.append(Finding(name, UNVERIFIED, detail=f"no pre-check for {type_}"))
    return declaration


def _recorded(outputs: dict[str, Any]) -> dict[str, Any]:
    metadata = outputs.get("metadata") or {}
    return {"__fieldManager": outputs.get("__fieldManager"),
            "metadata": {"resourceVersion": metadata.get("resourceVersion"),
                         "managedFields": metadata.get("managedFields")}}


# --------------------------------------------------------------------------- comparison

def object_finding(declared: DeclaredObject, live: dict[str, Any] | None) -> Finding | None:
    """How `live` differs from what the stack declared, by the provider's refresh rule."""
    if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
        return Finding(declared.resource, DELETED, detail=f"{declared.key} is gone")
    secret_paths: list[list[str | int]] = []
    changed = _differences(declared.inputs, live, [], secret_paths)
    changed += [path for path in secret_paths if not _secret_unchanged(declared, live, path)]
    if not changed:
        return None
    return Finding(declared.resource, CHANGED, tuple(sorted(format_path(p) for p in changed)))


def _differences(declared: Any, live: Any, path: list[str | int],
                 secret_paths: list[list[str | int]]) -> list[list[str | int]]:
    if is_encrypted(declared):
        secret_paths.append(path)
        return []
    if isinstance(declared, dict):
        if not isinstance(live, dict):
            return [path]
        found: list[list[str | int]] = []
        for key, value in declared.items():
            if key not in live:
                found.append([*path, key])
            else:
                found += _differences(value, live[key], [*path, key], secret_paths)
        return found
    if isinstance(declared, list):
        # pruneSlice: the live list cut to the declared length; shorter is a difference.
        if not isinstance(live, list) or len(live) < len(declared):
            return [path]
        found = []
        for index, value in enumerate(declared):
            found += _differences(value, live[index], [*path, index], secret_paths)
        return found
    return [] if _same_scalar(declared, live) else [path]


def _same_scalar(declared: Any, live: Any) -> bool:
    if isinstance(declared, bool) or isinstance(live, bool):
        return declared is live
    return declared == live


def _secret_unchanged(declared: DeclaredObject, live: dict[str, Any], path: list[str | int]) -> bool:
    recorded_meta, live_meta = declared.recorded.get("metadata") or {}, live.get("metadata") or {}
    if recorded_meta.get("resourceVersion") and recorded_meta.get("resourceVersion") == live_meta.get("resourceVersion"):
        return True
    if not path or not all(isinstance(part, str) for part in path):
        return False
    manager = declared.recorded.get("__fieldManager") or "cameleer"
    ours = _owned(recorded_meta.get("managedFields"), path, lambda e: e.get("manager") == manager)
    if not ours:
        return False
    still_ours = _owned(live_meta.get("managedFields"), path, lambda e: e.get("manager") == manager)
    theirs = _owned(live_meta.get("managedFields"), path, lambda e: e.get("manager") != manager)
    value = _lookup(live, path)
    present = isinstance(value, dict) and all(key[2:] in value for key in ours if key.startswith("f:"))
    return ours <= still_ours and not (ours & theirs) and present


def _owned(entries: Any, path: list[str | int], which: Callable[[dict], bool]) -> set[str]:
    """The field keys (`f:name`) directly under `path` that the chosen managers own."""
    owned: set[str] = set()
    for entry in entries or []:
        if not which(entry):
            continue
        node = entry.get("fieldsV1") or {}
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, dict) else None
        if isinstance(node, dict):
            owned |= {key for key in node if key != "."}
    return owned


def _lookup(value: Any, path: list[str | int]) -> Any:
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


# --------------------------------------------------------------------------- the run

ClusterConnector = Callable[[str], ClusterReader]


def default_cluster_name(environ: Mapping[str, str] | None = None) -> str:
    from stacks.clusters import DEFAULT_LOCAL_CLUSTER

    return (environ if environ is not None else os.environ).get("CAMELEER_CLUSTER", DEFAULT_LOCAL_CLUSTER)


def connect_cluster(name: str, environ: Mapping[str, str] | None = None) -> ClusterReader:
    """A reader for a named cluster, by the same kubeconfig lookup as the stack programs."""
    from stacks.clusters import kubeconfig_content

    return ClusterReader(name, kubeconfig_content(name, environ))


def run_precheck(
    checkpoints: Mapping[str, Checkpoint],
    *,
    connect: ClusterConnector | None = None,
    database_admin_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> PrecheckRun:
    """The verdict on every stack in `checkpoints`."""
    started = time.monotonic()
    connect = connect or (lambda name: connect_cluster(name, environ))
    declarations = [declaration_of(c) for c in checkpoints.values()]
    default_cluster = default_cluster_name(environ)
    run = PrecheckRun({})
    live, cluster_errors = _read_clusters(declarations, connect, default_cluster, run)
    schema_findings = database_findings(declarations, database_admin_url)
    for declaration in declarations:
        findings = list(declaration.findings)
        for declared in declaration.objects:
            cluster = declared.cluster or default_cluster
            if cluster in cluster_errors:
                findings.append(Finding(declared.resource, UNVERIFIED, detail=cluster_errors[cluster]))
            elif (finding := object_finding(declared, live[cluster].get(declared.key))) is not None:
                findings.append(finding)
        findings += schema_findings.get(declaration.stack, [])
        run.verdicts[declaration.stack] = StackVerdict(
            declaration.stack, tuple(findings), len(declaration.objects) + len(declaration.schemas))
    run.duration_seconds = time.monotonic() - started
    return run


def _read_clusters(declarations: list[StackDeclaration], connect: ClusterConnector, default_cluster: str,
                   run: PrecheckRun) -> tuple[dict[str, dict[ObjectKey, dict]], dict[str, str]]:
    kinds: dict[str, set[Kind]] = defaultdict(set)
    unselected: dict[str, set[Kind]] = defaultdict(set)
    for declaration in declarations:
        for declared in declaration.objects:
            cluster = declared.cluster or default_cluster
            kinds[cluster].add(declared.key.of_kind)
            if not declared.selectable:
                unselected[cluster].add(declared.key.of_kind)
    live: dict[str, dict[ObjectKey, dict]] = {}
    errors: dict[str, str] = {}
    for cluster in sorted(kinds):
        try:
            reader = connect(cluster)
        except LookupError as exc:
            errors[cluster] = str(exc)
            continue
        try:
            live[cluster] = reader.list_kinds(kinds[cluster], unselected=unselected[cluster])
            run.objects += len(live[cluster])
        except Exception as exc:  # noqa: BLE001 - an unreachable cluster sends its stacks to the engine
            errors[cluster] = f"cluster {cluster} could not be listed: {type(exc).__name__}: {str(exc)[:200]}"
        finally:
            run.requests += reader.requests
            reader.close()
    return live, errors


def database_findings(declarations: list[StackDeclaration], admin_url: str | None) -> dict[str, list[Finding]]:
    """The findings on each stack's tenant schemas, by stack."""
    observed, errors = _observe_schemas(declarations, admin_url)
    found: dict[str, list[Finding]] = defaultdict(list)
    for declaration in declarations:
        for schema in declaration.schemas:
            if schema.database in errors or schema.database not in observed:
                detail = errors.get(schema.database, f"database {schema.database!r} is not the one the "
                                    "pre-check can reach")
                found[declaration.stack].append(Finding(schema.resource, UNVERIFIED, detail=detail))
            elif (finding := _schema_finding(schema, observed[schema.database].get(schema.identifier))) is not None:
                found[declaration.stack].append(finding)
    return found


def _observe_schemas(declarations: list[StackDeclaration], admin_url: str | None,
                     ) -> tuple[dict[str, dict[str, dict | None]], dict[str, str]]:
    """Each schema's observation, by database and identifier, through one admin connection."""
    schemas = [s for d in declarations for s in d.schemas]
    if not schemas:
        return {}, {}
    if not admin_url:
        return {}, {s.database: "no tenant-database admin URL for the pre-check" for s in schemas}
    from components.providers.postgres import PostgresError, connected, observe

    try:
        with connected(admin_url) as conn:
            database = conn.info.dbname
            wanted = {s.identifier for s in schemas if s.database == database}
            return {database: {identifier: observe(conn, identifier, None) for identifier in sorted(wanted)}}, {}
    except PostgresError as exc:
        return {}, {s.database: f"tenant database unreachable: {exc}" for s in schemas}


def _schema_finding(schema: DeclaredSchema, observed: dict[str, Any] | None) -> Finding | None:
    if observed is None:
        return Finding(schema.resource, DELETED, detail=f"role {schema.identifier} is gone")
    recorded = schema.observed or {}
    changed = sorted(key for key in set(recorded) | set(observed) if recorded.get(key) != observed.get(key))
    return Finding(schema.resource, CHANGED, tuple(f"observed.{key}" for key in changed)) if changed else None
