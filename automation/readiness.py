"""Whether a tenant's workloads really run, and if not, why: read from the cluster.

A tenant is ready when, in every environment, its namespace is Active and labelled for
it, and its server Deployment has rolled out: the controller has seen the latest spec,
every replica is updated and available, every pod behind it is Ready, and the Service
has a ready endpoint for each. A suspended tenant is ready when it runs no pod at all.

When it is not, the problems name the cause the cluster reports: a pod the ResourceQuota
refused (the ReplicaSet's FailedCreate events), a pod no node can take (FailedScheduling),
a missing PriorityClass. pulumi-kubernetes' own rollout error only says that it timed out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from components.naming import TENANT_LABEL, namespace_name
from components.tenant_server import SERVER_NAME, selector_labels

# Event reasons that explain why pods do not come, newest first in the report.
BLOCKING_REASONS = ("FailedCreate", "FailedScheduling")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    problems: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        return "every environment's server is rolled out and Ready" if self.ready else "; ".join(self.problems)


def api_client(kubeconfig: str):
    """A Kubernetes client from a kubeconfig's content."""
    import yaml
    from kubernetes import config as kube_config

    return kube_config.new_client_from_config_dict(yaml.safe_load(kubeconfig))


def check_readiness(api, slug: str, environments: Iterable[str], *, suspended: bool) -> Readiness:
    """`api`: a kubernetes ApiClient for the tenant's cluster."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    problems: list[str] = []
    for environment in environments:
        namespace = namespace_name(slug, environment)
        try:
            ns = core.read_namespace(namespace)
            deployment = apps.read_namespaced_deployment(SERVER_NAME, namespace)
        except ApiException as exc:
            problems.append(f"{namespace}: {'missing' if exc.status == 404 else exc.reason}")
            continue
        problems += _namespace_problems(ns, slug, namespace)
        pods = core.list_namespaced_pod(namespace, label_selector=_selector()).items
        found = _suspended_problems(deployment, pods) if suspended else _rollout_problems(deployment, pods)
        if found and not suspended:
            found += blocking_events(core, namespace)
        problems += [f"{namespace}/{SERVER_NAME}: {problem}" for problem in found]
        if not found and not suspended:
            problems += [f"{namespace}/{SERVER_NAME}: {p}" for p in _endpoint_problems(core, namespace, deployment)]
    return Readiness(ready=not problems, problems=tuple(problems))


def blocking_events(core, namespace: str, limit: int = 3) -> list[str]:
    """The latest distinct reasons the cluster gave for not creating or placing pods."""
    events = core.list_namespaced_event(namespace).items
    blocking = [e for e in events if e.reason in BLOCKING_REASONS and e.type == "Warning"]
    blocking.sort(key=_event_time, reverse=True)
    messages = list(dict.fromkeys(f"{e.reason}: {e.message}" for e in blocking))
    return messages[:limit]


def _selector() -> str:
    return ",".join(f"{key}={value}" for key, value in selector_labels().items())


def _namespace_problems(ns: Any, slug: str, name: str) -> list[str]:
    problems = []
    if ns.status.phase != "Active":
        problems.append(f"{name}: phase {ns.status.phase}")
    if (ns.metadata.labels or {}).get(TENANT_LABEL) != slug:
        problems.append(f"{name}: label {TENANT_LABEL} is not {slug!r}")
    return problems


def _suspended_problems(deployment: Any, pods: list) -> list[str]:
    problems = []
    if deployment.spec.replicas:
        problems.append(f"{deployment.spec.replicas} replicas, expected 0 (suspended)")
    if pods:
        problems.append(f"{len(pods)} pod(s) still present, expected none (suspended)")
    return problems


def _rollout_problems(deployment: Any, pods: list) -> list[str]:
    wanted = deployment.spec.replicas or 0
    status = deployment.status
    if not wanted:
        return ["scaled to zero but the tenant is not suspended"]
    problems = []
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        problems.append("the controller has not seen the latest spec yet")
    for label, have in (("updated", status.updated_replicas), ("available", status.available_replicas)):
        if (have or 0) < wanted:
            problems.append(f"{have or 0}/{wanted} replicas {label}")
    unready = [pod.metadata.name for pod in pods if not _pod_ready(pod)]
    if unready:
        problems.append(f"pods not Ready: {', '.join(sorted(unready))}")
    return problems


def _endpoint_problems(core, namespace: str, deployment: Any) -> list[str]:
    from kubernetes.client.exceptions import ApiException

    try:
        endpoints = core.read_namespaced_endpoints(SERVER_NAME, namespace)
    except ApiException as exc:
        return [f"service endpoints {'missing' if exc.status == 404 else exc.reason}"]
    ready = sum(len(subset.addresses or []) for subset in endpoints.subsets or [])
    wanted = deployment.spec.replicas or 0
    return [] if ready >= wanted else [f"service has {ready}/{wanted} ready endpoints"]


def _pod_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in conditions)


def _event_time(event: Any):
    from datetime import datetime, timezone

    stamp = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return stamp or datetime.min.replace(tzinfo=timezone.utc)


# pulumi-kubernetes names the workload it gave up on: `"<namespace>/<name>" failed to fully
# initialize or become live`.
_FAILED_WORKLOAD = re.compile(r'"([a-z0-9][-a-z0-9]*)/([a-z0-9][-a-z0-9.]*)" failed to fully initialize')


def explain_rollout_failure(message: str, api_for_cluster) -> str:
    """`message` with the cluster's reasons appended when an update failed awaiting a
    rollout. `api_for_cluster()` gives an ApiClient; any failure to ask leaves the message."""
    namespaces = list(dict.fromkeys(match.group(1) for match in _FAILED_WORKLOAD.finditer(message)))
    if not namespaces:
        return message
    from kubernetes import client

    try:
        core = client.CoreV1Api(api_for_cluster())
        reasons = [f"{namespace}: {reason}" for namespace in namespaces
                   for reason in blocking_events(core, namespace)]
    except Exception:  # noqa: BLE001 - the engine's own error is reported either way
        return message
    return f"{message}; the cluster reports: {'; '.join(reasons)}" if reasons else message
