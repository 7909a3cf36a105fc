"""The CrossGuard policies: the rules of `policy.rules`, adapted to the resources the
engine hands over (see `policy.kube`), with their enforcement levels."""

from __future__ import annotations

from typing import Callable

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules
from policy.kube import kubernetes_object

PACK_NAME = "cameleer-guardrails"
MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY


def resource_policy(name: str, description: str, rule: Callable, enforcement: EnforcementLevel,
                    config_schema: PolicyConfigSchema | None = None,
                    configured: Callable[[dict], dict] = lambda config: {}) -> ResourceValidationPolicy:
    """A policy that applies `rule` to every Kubernetes object the stack declares."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        obj = kubernetes_object(args.resource_type, args.props)
        if obj is None:
            return
        for message in rule(obj, **configured(dict(args.get_config()))):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=enforcement, config_schema=config_schema)


def default_deny_per_tenant_namespace(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    objects = []
    for resource in args.resources:
        obj = kubernetes_object(resource.resource_type, resource.props)
        if obj is not None:
            objects.append(rules.StackObject(resource.urn, obj))
    for message, urn in rules.namespaces_without_default_deny(objects):
        report_violation(message, urn)


REGISTRIES_SCHEMA = PolicyConfigSchema(properties={
    "allowedRegistries": {
        "type": "array",
        "items": {"type": "string"},
        "default": list(rules.DEFAULT_ALLOWED_REGISTRIES),
        "description": "Registry hosts or host/path prefixes images may come from",
    },
})

POLICIES = [
    resource_policy("no-privileged-containers", "Containers must not run privileged.",
                    rules.privileged_containers, MANDATORY),
    resource_policy("no-host-access", "No hostPath volumes, hostNetwork, hostPID or hostIPC.",
                    rules.host_access, MANDATORY),
    resource_policy("restricted-security-context",
                    "Containers run as non-root, drop ALL capabilities (adding back at most "
                    f"{', '.join(rules.ALLOWED_ADDED_CAPABILITIES)}) and cannot escalate privileges.",
                    rules.restricted_security_context, MANDATORY),
    resource_policy("resource-limits", "Every container has CPU and memory limits.",
                    rules.resource_limits, MANDATORY),
    resource_policy("pinned-images", "Images are pinned by digest and come from an allowed registry.",
                    rules.pinned_images, MANDATORY, REGISTRIES_SCHEMA,
                    lambda config: {"allowed_registries": config.get(
                        "allowedRegistries", list(rules.DEFAULT_ALLOWED_REGISTRIES))}),
    resource_policy("tenant-namespace-labels",
                    "Tenant namespaces (labelled, or named tenant-*) carry Pod Security restricted labels "
                    "and the tenant labels.",
                    rules.tenant_namespace_labels, MANDATORY),
    StackValidationPolicy(name="tenant-namespace-default-deny",
                          description="Every tenant namespace has a default-deny NetworkPolicy.",
                          validate=default_deny_per_tenant_namespace, enforcement_level=MANDATORY),
    resource_policy("tenant-server-replicas",
                    "A tenant's server runs unless the tenant is suspended, and only then.",
                    rules.tenant_server_replicas, ADVISORY),
    resource_policy("probes", "Long-running containers have liveness and readiness probes.",
                    rules.probes, ADVISORY),
]
