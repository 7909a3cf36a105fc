"""The guardrails as plain functions over Kubernetes objects (mappings).

Each resource rule takes one object and returns its violations as messages; each message
names the object and says how to fix it. The stack rule takes every object of the stack.
`__main__` wires them into CrossGuard policies; tests call them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from components import naming
from components.images import from_allowed_registry, is_digest_pinned

from .kube import containers, describe, kind_of, labels, metadata, pod_spec

Violations = list[str]
DEFAULT_ALLOWED_REGISTRIES = ("ghcr.io/cameleer",)
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
# The only capability the restricted Pod Security Standard lets a container add back.
ALLOWED_ADDED_CAPABILITIES = ("NET_BIND_SERVICE",)


def _each_container(obj: Mapping[str, Any], check: Callable[[Mapping, Mapping, str], Iterable[str]]) -> Violations:
    """Run `check(pod, container, prefix)` over every container of a workload."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    violations: Violations = []
    for container in containers(pod):
        prefix = f"{describe(obj)}: container {container.get('name', '<unnamed>')!r}"
        violations.extend(check(pod, container, prefix))
    return violations


def _security_context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return container.get("securityContext") or {}


# --------------------------------------------------------------------------- mandatory


def privileged_containers(obj: Mapping[str, Any]) -> Violations:
    def check(_pod, container, prefix):
        if _security_context(container).get("privileged") is True:
            yield f"{prefix} is privileged; remove securityContext.privileged or set it to false"
    return _each_container(obj, check)


def host_access(obj: Mapping[str, Any]) -> Violations:
    pod = pod_spec(obj)
    if pod is None:
        return []
    violations = [f"{describe(obj)}: uses {field}; remove {field} (tenants never share the node's namespaces)"
                  for field in HOST_NAMESPACES if pod.get(field) is True]
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            violations.append(f"{describe(obj)}: volume {volume.get('name')!r} is a hostPath; "
                              "use an emptyDir, a Secret/ConfigMap or a PersistentVolumeClaim")
    return violations


def restricted_security_context(obj: Mapping[str, Any]) -> Violations:
    def check(pod, container, prefix):
        context = _security_context(container)
        pod_context = pod.get("securityContext") or {}
        run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if run_as_non_root is not True:
            yield f"{prefix} may run as root; set securityContext.runAsNonRoot: true (container or pod)"
        capabilities = _capabilities_violation(context.get("capabilities") or {})
        if capabilities:
            yield f"{prefix} {capabilities}"
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{prefix} may escalate privileges; set securityContext.allowPrivilegeEscalation: false"
    return _each_container(obj, check)


def _capabilities_violation(capabilities: Mapping[str, Any]) -> str | None:
    """What is wrong with a container's capabilities and how to fix it, in one message."""
    problems, fixes = [], []
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("keeps Linux capabilities")
        fixes.append("set securityContext.capabilities.drop: [ALL]")
    added = [str(name) for name in capabilities.get("add") or [] if name not in ALLOWED_ADDED_CAPABILITIES]
    if added:
        listed = ", ".join(added)
        problems.append(f"adds {listed} to its capabilities")
        fixes.append(f"remove {listed} from securityContext.capabilities.add (only "
                     f"{', '.join(ALLOWED_ADDED_CAPABILITIES)} may be added)")
    return f"{' and '.join(problems)}; {' and '.join(fixes)}" if problems else None


def resource_limits(obj: Mapping[str, Any]) -> Violations:
    def check(_pod, container, prefix):
        limits = (container.get("resources") or {}).get("limits") or {}
        missing = [resource for resource in ("cpu", "memory") if not limits.get(resource)]
        if missing:
            yield f"{prefix} has no {' or '.join(missing)} limit; set resources.limits.{missing[0]}" + (
                f" and resources.limits.{missing[1]}" if len(missing) > 1 else "")
    return _each_container(obj, check)


def pinned_images(obj: Mapping[str, Any], allowed_registries: Iterable[str] = DEFAULT_ALLOWED_REGISTRIES) -> Violations:
    allowed = tuple(allowed_registries)

    def check(_pod, container, prefix):
        image = str(container.get("image", ""))
        if not is_digest_pinned(image):
            yield f"{prefix} image {image!r} is not pinned by digest; use <image>@sha256:<digest>"
        if not from_allowed_registry(image, allowed):
            yield (f"{prefix} image {image!r} is not from an allowed registry ({', '.join(allowed)}); "
                   "push it there or add the registry to the pack's allowedRegistries")
    return _each_container(obj, check)


def is_tenant_namespace(obj: Mapping[str, Any]) -> bool:
    """A Namespace labelled for a tenant or named like one (an unlabelled `tenant-*`
    namespace gets the tenant rules too, so dropping the label does not escape them)."""
    return kind_of(obj) == "Namespace" and (
        naming.TENANT_LABEL in labels(obj) or naming.is_tenant_namespace_name(metadata(obj).get("name")))


def tenant_namespace_labels(obj: Mapping[str, Any]) -> Violations:
    if not is_tenant_namespace(obj):
        return []
    present = labels(obj)
    violations = []
    for mode in naming.POD_SECURITY_MODES:
        key = f"pod-security.kubernetes.io/{mode}"
        level = present.get(key)
        if level != naming.POD_SECURITY_LEVEL:
            found = "missing" if level is None else repr(level)
            violations.append(f"{describe(obj)}: label {key} is {found}; set it to {naming.POD_SECURITY_LEVEL!r}")
        if not present.get(f"{key}-version"):
            violations.append(f"{describe(obj)}: label {key}-version is missing; set it to "
                              f"{naming.POD_SECURITY_VERSION!r}")
    for key in naming.TENANT_LABEL_KEYS:
        if not present.get(key):
            violations.append(f"{describe(obj)}: tenant label {key} is missing or empty; set it "
                              "(TenantNamespace does)")
    return violations


# --------------------------------------------------------------------------- stack


@dataclass(frozen=True)
class StackObject:
    urn: str
    obj: Mapping[str, Any]


def is_default_deny(obj: Mapping[str, Any]) -> bool:
    """A NetworkPolicy selecting every pod, for ingress and egress, allowing nothing."""
    if kind_of(obj) != "NetworkPolicy":
        return False
    spec = obj.get("spec") or {}
    selects_all = not (spec.get("podSelector") or {}).get("matchLabels") and \
        not (spec.get("podSelector") or {}).get("matchExpressions")
    types = set(spec.get("policyTypes") or [])
    return selects_all and {"Ingress", "Egress"} <= types and not spec.get("ingress") and not spec.get("egress")


def namespaces_without_default_deny(objects: Iterable[StackObject]) -> list[tuple[str, str]]:
    """(message, urn) for each tenant namespace of the stack lacking a default-deny policy."""
    objects = list(objects)
    denied = {metadata(item.obj).get("namespace") for item in objects if is_default_deny(item.obj)}
    return [
        (f"{describe(item.obj)} has no default-deny NetworkPolicy (empty podSelector, policyTypes "
         "Ingress and Egress, no rules); add one, as NetworkIsolation does", item.urn)
        for item in objects
        if is_tenant_namespace(item.obj) and metadata(item.obj).get("name") not in denied
    ]


# --------------------------------------------------------------------------- advisory


def tenant_server_replicas(obj: Mapping[str, Any]) -> Violations:
    """A tenant Deployment runs when (and only when) its tenant is not suspended."""
    if kind_of(obj) != "Deployment" or naming.TENANT_LABEL not in labels(obj):
        return []
    suspended = labels(obj).get(naming.SUSPENDED_LABEL) == "true"
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    if not suspended and replicas == 0:
        return [f"{describe(obj)}: 0 replicas for a tenant that is not suspended; scale it up, or "
                f"label it {naming.SUSPENDED_LABEL}=true if the tenant is suspended"]
    if suspended and replicas:
        return [f"{describe(obj)}: {replicas} replicas for a suspended tenant; set replicas to 0"]
    return []


def probes(obj: Mapping[str, Any]) -> Violations:
    pod = pod_spec(obj)
    if pod is None or kind_of(obj) in ("Job", "CronJob"):
        return []
    violations = []
    for container in pod.get("containers") or []:
        prefix = f"{describe(obj)}: container {container.get('name', '<unnamed>')!r}"
        missing = [probe for probe in ("livenessProbe", "readinessProbe") if not container.get(probe)]
        if missing:
            violations.append(f"{prefix} has no {' or '.join(missing)}; add it so failures are noticed")
    return violations
