"""Kubernetes objects as the policies see them.

The stacks declare typed pulumi-kubernetes resources: type `kubernetes:<group>/<version>:<Kind>`
(`kubernetes:core/v1:Namespace`, `kubernetes:apps/v1:Deployment`, ...), the object's fields
as the properties themselves. Each becomes one plain mapping with apiVersion, kind,
metadata, spec... . Anything else (the provider resource `pulumi:providers:kubernetes`,
components, the project's other dynamic resources) declares no object.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, Sequence
from typing import Any, Iterator

NATIVE_PREFIX = "kubernetes:"

WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController",
                  "Job", "CronJob")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def kubernetes_object(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Kubernetes object a resource declares, or None if it declares none.

    The properties are read lazily, field by field: in a preview some values are unknown
    (a Secret's `stringData` from a password not generated yet), and the policy SDK fails a
    policy that reads an unknown value. No rule reads a field it does not check."""
    if not resource_type.startswith(NATIVE_PREFIX):
        return None
    _, module, kind = (resource_type.split(":") + ["", ""])[:3]
    if "/" not in module or not kind:
        return None  # e.g. the kubernetes:yaml:ConfigFile component
    group, version = module.split("/", 1)
    api_version = version if group == "core" else module
    return ChainMap({"apiVersion": api_version, "kind": kind}, props)


def kind_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("kind", ""))


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    value = metadata(obj).get("labels")
    return value if isinstance(value, Mapping) else {}


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name`, as violation messages name a resource."""
    meta = metadata(obj)
    name = meta.get("name", "<unnamed>")
    namespace = meta.get("namespace")
    return f"{kind_of(obj)} {namespace}/{name}" if namespace else f"{kind_of(obj)} {name}"


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload (a CronJob's is two templates deep); None for other kinds."""
    kind = kind_of(obj)
    if kind not in WORKLOAD_KINDS:
        return None
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in CONTAINER_LISTS:
        items = pod.get(key) or []
        if isinstance(items, Sequence):
            yield from (item for item in items if isinstance(item, Mapping))
