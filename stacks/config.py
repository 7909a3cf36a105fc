"""Stack names and `cameleer:` configuration, validated before any resource is registered.

Everything wrong with a stack's configuration is reported at once, in one message, as a
`StackConfigError` (a `pulumi.RunError`, so the engine prints the message, not a trace).

Keys (namespace `cameleer:`):
    slug              tenant slug; must match the stack name (defaults to it)
    tier              low | mid | high | business
    environments      list of environment names the tier allows
    image             server image, pinned by digest
    databaseEndpoint  host:port of the shared PostgreSQL as tenants reach it
    databaseCidr      network to allow for it (default: the host as /32, if an address)
    databaseAdminUrl  (secret) admin connection URL of that PostgreSQL
    license           (secret) the tenant's license JWT
    suspended         true to run no workloads
    committed         {cpu, memory} committed resources (dedicated tiers)
    clusterCidrs      pod and service networks of the cluster
    cluster           the cluster's name in the registry (default eu1; a shared-<cluster>
                      stack's is its own name); its kubeconfig is found at run time, see
                      stacks/clusters.py, and never stored in config
    rolloutTimeout    how long an update waits for the server's rollout (default 5m)
    secretsAuthMount  the Kubernetes auth mount the server logs in to OpenBao with (default: not
                      told, the method's default path; the control plane sets it for every
                      cluster but its own, see components.naming.secrets_auth_mount)
    secretsAddress    OpenBao's address as the tenant's cluster reaches it, an http(s) URL
                      (default: not told; stacks from before servers were told keep updating)
    controlPlaneUrl   the control plane's base URL as tenant servers reach it, where they fetch
                      their license and post usage reports (default: not told, likewise)
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import pulumi

from components.catalog import CatalogError, Compute, Placement, Tier, get_tier, validate_slug
from components.endpoints import DatabaseEndpoint
from components.images import validate_pinned_image
from components.tenant_server import DEFAULT_ROLLOUT_TIMEOUT

NAMESPACE = "cameleer"
DEFAULT_CLUSTER = "eu1"
_DURATION = re.compile(r"^[1-9][0-9]*(s|m|h)$")
_MOUNT_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$")


class StackConfigError(pulumi.RunError):
    """The stack's name or configuration is invalid; the message says what to change."""


class StackKind(str, Enum):
    TENANT = "tenant"  # a tenant on a shared cluster
    DEDICATED = "dedicated"  # a customer's dedicated cluster and its tenant environments
    SHARED = "shared"  # a shared cluster's baseline

    @property
    def placement(self) -> Placement | None:
        return {StackKind.TENANT: Placement.SHARED, StackKind.DEDICATED: Placement.DEDICATED}.get(self)


@dataclass(frozen=True)
class StackName:
    kind: StackKind
    # The tenant slug, or the shared cluster's name.
    subject: str

    def __str__(self) -> str:
        return f"{self.kind.value}-{self.subject}"


def parse_stack_name(stack: str) -> StackName:
    kind_name, _, subject = stack.partition("-")
    kinds = ", ".join(f"{kind.value}-<name>" for kind in StackKind)
    try:
        kind = StackKind(kind_name)
    except ValueError:
        raise StackConfigError(f"stack {stack!r} is not one of {kinds}") from None
    try:
        validate_slug(subject)
    except CatalogError as error:
        raise StackConfigError(f"stack {stack!r}: {error}") from None
    return StackName(kind, subject)


@dataclass(frozen=True)
class TenantSettings:
    slug: str
    tier: Tier
    environments: tuple[str, ...]
    image: str
    database: DatabaseEndpoint
    suspended: bool
    committed: Compute | None
    cluster_cidrs: tuple[str, ...]
    cluster: str = DEFAULT_CLUSTER
    rollout_timeout: str = DEFAULT_ROLLOUT_TIMEOUT
    secrets_auth_mount: str | None = None
    secrets_address: str | None = None
    control_plane_url: str | None = None


@dataclass(frozen=True)
class SharedClusterSettings:
    cluster: str
    cluster_cidrs: tuple[str, ...]


class _Problems:
    """Collects every configuration problem, so the operator fixes them in one pass."""

    def __init__(self, stack: StackName):
        self.stack = stack
        self.messages: list[str] = []

    def check(self, key: str, parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except (ValueError, TypeError) as error:  # CatalogError is a ValueError
            self.messages.append(f"{NAMESPACE}:{key}: {error}")
            return None

    def add(self, key: str, message: str) -> None:
        self.messages.append(f"{NAMESPACE}:{key}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            listed = "\n  - ".join(self.messages)
            raise StackConfigError(f"invalid configuration for stack {self.stack}:\n  - {listed}")


def tenant_settings(stack: StackName, raw: Mapping[str, Any], secrets_present: Mapping[str, bool]) -> TenantSettings:
    """Validate a tenant or dedicated stack's configuration.

    `raw` holds the plain values by key (lists and objects may be JSON text, as the CLI
    stores them); `secrets_present` says which secret keys are set, without their values.
    """
    problems = _Problems(stack)
    slug = problems.check("slug", lambda: _slug(stack, raw.get("slug")))
    tier = problems.check("tier", lambda: get_tier(_required(raw, "tier")))
    if tier is not None and tier.placement is not stack.kind.placement:
        problems.add("tier", _placement_message(stack, tier))
    environments = problems.check("environments", lambda: _environments(tier, raw.get("environments")))
    image = problems.check("image", lambda: validate_pinned_image(_required(raw, "image")))
    database = problems.check("databaseEndpoint", lambda: DatabaseEndpoint.parse(
        _required(raw, "databaseEndpoint"), raw.get("databaseCidr")))
    suspended = problems.check("suspended", lambda: _bool(raw.get("suspended", False)))
    committed = problems.check("committed", lambda: _committed(tier, raw.get("committed")))
    cidrs = problems.check("clusterCidrs", lambda: _cidrs(raw.get("clusterCidrs")))
    cluster = problems.check("cluster", lambda: validate_slug(raw.get("cluster") or DEFAULT_CLUSTER))
    rollout_timeout = problems.check("rolloutTimeout", lambda: _duration(raw.get("rolloutTimeout")))
    auth_mount = problems.check("secretsAuthMount", lambda: _mount_path(raw.get("secretsAuthMount")))
    secrets_address = problems.check("secretsAddress", lambda: _optional_base_url(raw.get("secretsAddress")))
    control_plane_url = problems.check("controlPlaneUrl", lambda: _optional_base_url(raw.get("controlPlaneUrl")))
    for key in ("databaseAdminUrl", "license"):
        if not secrets_present.get(key):
            problems.add(key, f"missing; set it with `pulumi config set --secret {NAMESPACE}:{key} ...`")
    problems.raise_if_any()
    return TenantSettings(slug=slug, tier=tier, environments=environments, image=image, database=database,
                          suspended=suspended, committed=committed, cluster_cidrs=cidrs,
                          cluster=cluster, rollout_timeout=rollout_timeout, secrets_auth_mount=auth_mount,
                          secrets_address=secrets_address, control_plane_url=control_plane_url)


def shared_cluster_settings(stack: StackName, raw: Mapping[str, Any]) -> SharedClusterSettings:
    problems = _Problems(stack)
    cidrs = problems.check("clusterCidrs", lambda: _cidrs(raw.get("clusterCidrs")))
    problems.raise_if_any()
    return SharedClusterSettings(cluster=stack.subject, cluster_cidrs=cidrs)


def _duration(value: Any) -> str:
    if value in (None, ""):
        return DEFAULT_ROLLOUT_TIMEOUT
    if not _DURATION.match(str(value)):
        raise ValueError(f"expected a duration such as 90s, 5m or 1h, got {value!r}")
    return str(value)


def _mount_path(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not _MOUNT_PATH.match(str(value)):
        raise ValueError(f"expected an OpenBao mount path such as kubernetes-eu2, got {value!r}")
    return str(value)


def _optional_base_url(value: Any) -> str | None:
    return None if value in (None, "") else base_url(value)


def base_url(value: Any) -> str:
    """An http(s) URL a tenant server joins its paths to, without a trailing slash. A URL
    carrying credentials is refused without being quoted: the server gets its own."""
    text = str(value)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError("expected an http(s) URL such as https://host.example.com:8200") from None
    if "@" in text:  # user:password@host, or anything like it, is never quoted back
        raise ValueError("the URL must not contain '@' (credentials, user:password@); the server logs in "
                         "with its own")
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise ValueError(f"expected an http(s) URL such as https://host.example.com:8200, got {text!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"expected a base URL without query or fragment, got {text!r}")
    return text.rstrip("/")


def _required(raw: Mapping[str, Any], key: str) -> Any:
    value = raw.get(key)
    if value in (None, ""):
        raise ValueError(f"missing; set it with `pulumi config set {NAMESPACE}:{key} ...`")
    return value


def _slug(stack: StackName, configured: str | None) -> str:
    if configured is not None and configured != stack.subject:
        raise ValueError(f"{configured!r} does not match the stack name {str(stack)!r} (slug {stack.subject!r})")
    return validate_slug(stack.subject)


def _placement_message(stack: StackName, tier: Tier) -> str:
    kind = next(kind for kind in StackKind if kind.placement is tier.placement)
    return (f"tier {tier.name!r} runs on a {tier.placement.value} cluster; "
            f"its stack is {kind.value}-{stack.subject}, not {stack}")


def _environments(tier: Tier | None, value: Any) -> tuple[str, ...] | None:
    environments = _string_list(value)
    if tier is None:
        return None  # the tier's own problem is already reported
    if not environments:
        environments = ("prod",) if tier.allows_environment("prod") else ()
    return tier.check_environments(list(environments))


def _committed(tier: Tier | None, value: Any) -> Compute | None:
    if tier is None or (value is None and not tier.requires_commitment):
        return None
    if value is None:
        raise ValueError(f"missing; tier {tier.name!r} is billed on committed resources: "
                         f"set {{cpu: <cores>, memory: <e.g. 32Gi>}}")
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict) or set(value) != {"cpu", "memory"}:
        raise ValueError("give committed resources as {cpu: <cores>, memory: <e.g. 32Gi>}")
    committed = Compute.parse(value["cpu"], value["memory"])
    tier.check_commitment(committed)
    return committed


def _string_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"expected a list, got {value!r}") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _cidrs(value: Any) -> tuple[str, ...]:
    cidrs = _string_list(value)
    for cidr in cidrs:
        ipaddress.ip_network(cidr)  # its ValueError names the bad value
    return cidrs


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(f"expected true or false, got {value!r}")


# --------------------------------------------------------------------------- from pulumi.Config

PLAIN_KEYS = ("slug", "tier", "environments", "image", "databaseEndpoint", "databaseCidr",
              "suspended", "committed", "clusterCidrs", "cluster", "rolloutTimeout",
              "secretsAuthMount", "secretsAddress", "controlPlaneUrl")
SECRET_KEYS = ("databaseAdminUrl", "license")


def database_password_key(environment: str) -> str:
    """The optional secret key holding an environment's database password (a moved tenant's)."""
    return f"databasePassword-{environment}"


def read_plain(config: pulumi.Config) -> dict[str, Any]:
    """The plain keys as the engine passed them (text; lists and objects as JSON text)."""
    return {key: value for key in PLAIN_KEYS if (value := config.get(key)) is not None}


def secrets_present(config: pulumi.Config) -> dict[str, bool]:
    return {key: config.get_secret(key) is not None for key in SECRET_KEYS}
