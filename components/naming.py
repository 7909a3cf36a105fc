"""Names and labels shared by the components, the stacks and the policy pack.

No Pulumi import: the policy pack and the control-plane service read these too.
"""

from __future__ import annotations

from .catalog import NAMESPACE_PREFIX, validate_environment_name, validate_slug

PLATFORM_NAMESPACE = "cameleer-system"

# Kubernetes sets this label on every namespace itself (and tenants cannot create
# namespaces), so selecting the platform namespace by it cannot be spoofed.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

TENANT_LABEL = "cameleer.io/tenant"
TIER_LABEL = "cameleer.io/tier"
ENVIRONMENT_LABEL = "cameleer.io/environment"
SUSPENDED_LABEL = "cameleer.io/suspended"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "cameleer-control-plane"
PART_OF_LABEL = "app.kubernetes.io/part-of"

TENANT_LABEL_KEYS = (TENANT_LABEL, TIER_LABEL, ENVIRONMENT_LABEL)

# Pod Security Admission, pinned to the API server's minor version so a cluster upgrade
# cannot tighten (and break) running tenants without a deliberate change here.
POD_SECURITY_LEVEL = "restricted"
POD_SECURITY_VERSION = "v1.34"
POD_SECURITY_MODES = ("enforce", "audit", "warn")


# A tenant server reaches its secrets in OpenBao through the Kubernetes auth method: it logs
# in to the role `tenant-<slug>` with a projected service-account token of this audience and
# reads `tenants/<slug>/...` (api/tenant_secrets.py writes the role and its policy).
SECRETS_MOUNT = "tenants"
SECRETS_TOKEN_AUDIENCE = "openbao"
SECRETS_TOKEN_DIR = "/var/run/secrets/openbao"
# OpenBao checks a token with the TokenReview API of the cluster that signed it, so each cluster
# has a Kubernetes auth mount of its own: the configured mount (by default `kubernetes`, the
# method's default path) serves the platform's own cluster, `<mount>-<cluster>` every other one
# (scripts/services.sh mounts the local clusters' so). A server not told its mount uses the default.
SECRETS_AUTH_MOUNT = "kubernetes"


def secrets_auth_mount(cluster: str, *, platform_cluster: str, mount: str = SECRETS_AUTH_MOUNT) -> str:
    """The Kubernetes auth mount whose roles admit the service accounts of ``cluster``."""
    return mount if cluster == platform_cluster else f"{mount}-{cluster}"


def secrets_role(slug: str) -> str:
    return f"tenant-{validate_slug(slug)}"


def secrets_policy(slug: str) -> str:
    return f"cameleer-tenant-{validate_slug(slug)}"


def pod_security_labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for mode in POD_SECURITY_MODES:
        labels[f"pod-security.kubernetes.io/{mode}"] = POD_SECURITY_LEVEL
        labels[f"pod-security.kubernetes.io/{mode}-version"] = POD_SECURITY_VERSION
    return labels


def namespace_name(slug: str, environment: str) -> str:
    """`tenant-<slug>-<env>`; both parts are validated so the name is always legal."""
    return f"{NAMESPACE_PREFIX}{validate_slug(slug)}-{validate_environment_name(environment)}"


def is_tenant_namespace_name(name: object) -> bool:
    """Whether `name` lies in the tenants' namespace range (`tenant-...`), well-formed or
    not: whatever made such a namespace, the tenant guardrails hold for it."""
    return isinstance(name, str) and name.startswith(NAMESPACE_PREFIX)


def database_identifier(slug: str, environment: str) -> str:
    """The PostgreSQL schema and role name of a tenant environment: `tenant_<slug>_<env>`."""
    return namespace_name(slug, environment).replace("-", "_")


def tenant_labels(slug: str, tier: str, environment: str) -> dict[str, str]:
    return {
        TENANT_LABEL: slug,
        TIER_LABEL: tier,
        ENVIRONMENT_LABEL: environment,
        MANAGED_BY_LABEL: MANAGED_BY,
    }
