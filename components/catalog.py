"""The tier catalog: the one place that says what each tier gets.

Quotas, allowed environments, license features and limits, and billing prices are all
read from here; nothing else in the project branches on a tier's name. The module is
plain data (frozen dataclasses) with no Pulumi import, so the control-plane service can
use it for licensing and billing as well.

    tier = get_tier("mid")
    tier.features.correlation          # True
    tier.limits.retention_days         # 30
    tier.quota_for("dev").hard()       # ResourceQuota spec.hard
    tier.allows_environment("staging") # False
    validate_slug("acme")              # returns "acme" or raises CatalogError
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Mapping, Union


class CatalogError(ValueError):
    """A tier, slug, environment or commitment that the catalog does not allow."""


# --------------------------------------------------------------------------- names

NAMESPACE_PREFIX = "tenant-"
KUBERNETES_NAME_LIMIT = 63
MAX_ENVIRONMENT_LENGTH = 12
# `tenant-<slug>-<env>` must stay a valid namespace name for the longest environment.
MAX_SLUG_LENGTH = KUBERNETES_NAME_LIMIT - len(NAMESPACE_PREFIX) - len("-") - MAX_ENVIRONMENT_LENGTH

# A DNS-1123 label; the API states it in its OpenAPI document too.
SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL = re.compile(SLUG_PATTERN)
# Environment names also become PostgreSQL identifiers and URL path segments: keep them
# to letters and digits, starting with a letter.
_ENVIRONMENT = re.compile(r"^[a-z][a-z0-9]*$")


def validate_slug(slug: str) -> str:
    """Return `slug` if it can name a tenant everywhere it is used, else raise CatalogError."""
    if not isinstance(slug, str) or not slug:
        raise CatalogError("tenant slug is empty; use lowercase letters, digits and '-'")
    if len(slug) > MAX_SLUG_LENGTH:
        raise CatalogError(
            f"tenant slug {slug!r} is {len(slug)} characters; at most {MAX_SLUG_LENGTH} are allowed "
            f"so that namespace names '{NAMESPACE_PREFIX}<slug>-<environment>' stay within "
            f"{KUBERNETES_NAME_LIMIT} characters"
        )
    if not _DNS_LABEL.fullmatch(slug):
        raise CatalogError(
            f"tenant slug {slug!r} is not a DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return slug


def validate_environment_name(name: str) -> str:
    """Return `name` if it is a well-formed environment name, else raise CatalogError."""
    if not isinstance(name, str) or not name:
        raise CatalogError("environment name is empty")
    if len(name) > MAX_ENVIRONMENT_LENGTH:
        raise CatalogError(
            f"environment name {name!r} is {len(name)} characters; at most "
            f"{MAX_ENVIRONMENT_LENGTH} are allowed"
        )
    if not _ENVIRONMENT.match(name):
        raise CatalogError(
            f"environment name {name!r} is invalid: use lowercase letters and digits, "
            "starting with a letter"
        )
    return name


# --------------------------------------------------------------------------- resources


def cpu(millicores: int) -> str:
    """Kubernetes quantity for a CPU amount in millicores."""
    return f"{millicores // 1000}" if millicores % 1000 == 0 else f"{millicores}m"


def memory(mebibytes: int) -> str:
    """Kubernetes quantity for a memory amount in MiB."""
    return f"{mebibytes // 1024}Gi" if mebibytes % 1024 == 0 else f"{mebibytes}Mi"


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+)(Mi|Gi|Ti)$")
_MEBIBYTES_PER = {"Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def parse_cpu(quantity: str | int | float) -> int:
    """Millicores of a CPU quantity: `2`, `0.5`, `1500m`."""
    match = _CPU.match(str(quantity).strip())
    if not match:
        raise CatalogError(f"CPU amount {quantity!r} is not a quantity like '8', '0.5' or '1500m'")
    number, milli = match.groups()
    return int(Decimal(number)) if milli else int(Decimal(number) * 1000)


def parse_memory(quantity: str) -> int:
    """MiB of a memory quantity: `512Mi`, `16Gi`, `1Ti`."""
    match = _MEMORY.match(str(quantity).strip())
    if not match:
        raise CatalogError(f"memory amount {quantity!r} is not a quantity like '512Mi' or '16Gi'")
    number, unit = match.groups()
    return int(number) * _MEBIBYTES_PER[unit]


@dataclass(frozen=True)
class Compute:
    """An amount of CPU (millicores) and memory (MiB)."""

    cpu_m: int
    memory_mi: int

    @classmethod
    def parse(cls, cpu_quantity: str | int | float, memory_quantity: str) -> Compute:
        return cls(parse_cpu(cpu_quantity), parse_memory(memory_quantity))

    def scaled(self, share: Decimal) -> Compute:
        return Compute(int(self.cpu_m * share), int(self.memory_mi * share))

    def fits_within(self, other: Compute) -> bool:
        return self.cpu_m <= other.cpu_m and self.memory_mi <= other.memory_mi

    def as_resources(self) -> dict[str, str]:
        return {"cpu": cpu(self.cpu_m), "memory": memory(self.memory_mi)}


@dataclass(frozen=True)
class ResourceQuota:
    """What one tenant environment (namespace) may consume in total."""

    requests: Compute
    limits: Compute
    pods: int
    services: int
    persistent_volume_claims: int
    storage_gi: int
    secrets: int = 20
    config_maps: int = 20

    def hard(self) -> dict[str, str]:
        """The `spec.hard` of a Kubernetes ResourceQuota."""
        return {
            "requests.cpu": cpu(self.requests.cpu_m),
            "requests.memory": memory(self.requests.memory_mi),
            "limits.cpu": cpu(self.limits.cpu_m),
            "limits.memory": memory(self.limits.memory_mi),
            "pods": str(self.pods),
            "services": str(self.services),
            "services.loadbalancers": "0",
            "services.nodeports": "0",
            "persistentvolumeclaims": str(self.persistent_volume_claims),
            "requests.storage": f"{self.storage_gi}Gi",
            "secrets": str(self.secrets),
            "configmaps": str(self.config_maps),
        }

    def with_compute(self, requests: Compute, limits: Compute) -> ResourceQuota:
        return ResourceQuota(
            requests=requests,
            limits=limits,
            pods=self.pods,
            services=self.services,
            persistent_volume_claims=self.persistent_volume_claims,
            storage_gi=self.storage_gi,
            secrets=self.secrets,
            config_maps=self.config_maps,
        )


@dataclass(frozen=True)
class ContainerDefaults:
    """A LimitRange: what a container gets when it asks for nothing, and the most it may ask."""

    default_request: Compute
    default_limit: Compute
    max: Compute

    def limits(self) -> list[dict]:
        """The `spec.limits` of a Kubernetes LimitRange."""
        return [
            {
                "type": "Container",
                "defaultRequest": self.default_request.as_resources(),
                "default": self.default_limit.as_resources(),
                "max": self.max.as_resources(),
            }
        ]


@dataclass(frozen=True)
class ServerSize:
    """Requests and limits of the tenant server container."""

    requests: Compute
    limits: Compute

    def resources(self) -> dict[str, dict[str, str]]:
        """The `resources` block of a container spec."""
        return {"requests": self.requests.as_resources(), "limits": self.limits.as_resources()}


@dataclass(frozen=True)
class EnvironmentProfile:
    """Everything sized per environment: quota, container defaults, the server itself.

    `committed_share` is the fraction of a dedicated customer's committed resources this
    environment's quota gets; None on metered tiers.
    """

    quota: ResourceQuota
    container_defaults: ContainerDefaults
    server: ServerSize
    committed_share: Decimal | None = None


# --------------------------------------------------------------------------- license


class Placement(str, Enum):
    SHARED = "shared"
    DEDICATED = "dedicated"


class Lineage(str, Enum):
    LIMITED = "limited"
    FULL = "full"


@dataclass(frozen=True)
class Features:
    """Product features the license switches on."""

    topology: bool
    lineage: Lineage
    correlation: bool
    debugger: bool
    replay: bool
    sso: bool
    custom_roles: bool

    def as_claims(self) -> dict[str, object]:
        return {
            "topology": self.topology,
            "lineage": self.lineage.value,
            "correlation": self.correlation,
            "debugger": self.debugger,
            "replay": self.replay,
            "sso": self.sso,
            "custom_roles": self.custom_roles,
        }


@dataclass(frozen=True)
class Limits:
    """Product limits the license carries.

    `retention_days` is None where retention is negotiated per contract ("custom"); the
    contract's value is then supplied with `Limits.with_retention`.
    """

    agents: int
    retention_days: int | None
    environments: int
    vaults: int
    debug_sessions: int

    @property
    def custom_retention(self) -> bool:
        return self.retention_days is None

    def with_retention(self, days: int) -> Limits:
        if not self.custom_retention:
            raise CatalogError(f"retention is fixed at {self.retention_days} days for this tier")
        if days < 1:
            raise CatalogError(f"retention must be at least 1 day, not {days}")
        return Limits(self.agents, days, self.environments, self.vaults, self.debug_sessions)

    def as_claims(self) -> dict[str, object]:
        return {
            "agents": self.agents,
            "retention_days": self.retention_days,
            "environments": self.environments,
            "vaults": self.vaults,
            "debug_sessions": self.debug_sessions,
        }


# --------------------------------------------------------------------------- billing


class UsageDimension(str, Enum):
    """What metered tiers pay for beyond the base fee, each in its billing unit."""

    CPU_CORE_HOURS = "cpu_core_hours"
    RAM_GB_HOURS = "ram_gb_hours"
    GB_INGESTED = "gb_ingested"


@dataclass(frozen=True)
class BillingTerms:
    """How a tier's subscription starts and how long an unpaid invoice is tolerated.

    `trial_days` > 0 starts the subscription trialing, so the tenant is provisioned before
    any payment; otherwise provisioning waits for the first invoice to be paid.
    """

    trial_days: int = 0
    payment_grace_days: int = 3


@dataclass(frozen=True)
class MeteredPricing:
    """A monthly base fee plus usage."""

    base_fee_monthly: Decimal
    per_cpu_core_hour: Decimal
    per_ram_gb_hour: Decimal
    per_gb_ingested: Decimal
    terms: BillingTerms = BillingTerms()
    currency: str = "EUR"
    kind: str = field(default="metered", init=False)

    def unit_price(self, dimension: UsageDimension) -> Decimal:
        return {
            UsageDimension.CPU_CORE_HOURS: self.per_cpu_core_hour,
            UsageDimension.RAM_GB_HOURS: self.per_ram_gb_hour,
            UsageDimension.GB_INGESTED: self.per_gb_ingested,
        }[dimension]


@dataclass(frozen=True)
class CommittedPricing:
    """A monthly price for committed resources, with a minimum commitment."""

    per_cpu_core_month: Decimal
    per_ram_gb_month: Decimal
    minimum: Compute
    terms: BillingTerms = BillingTerms(payment_grace_days=7)
    currency: str = "EUR"
    kind: str = field(default="committed", init=False)

    def monthly_price(self, committed: Compute) -> Decimal:
        cores = Decimal(committed.cpu_m) / 1000
        gigabytes = Decimal(committed.memory_mi) / 1024
        return cores * self.per_cpu_core_month + gigabytes * self.per_ram_gb_month


Billing = Union[MeteredPricing, CommittedPricing]


# --------------------------------------------------------------------------- tiers


class DriftCorrection(str, Enum):
    """What the drift watcher does when a tenant's objects drift from its stack."""

    AUTO = "auto"  # queue a correction (at most once per tenant per interval)
    REPORT = "report"  # report only: an operator corrects (dedicated customers preview first)


@dataclass(frozen=True)
class Tier:
    name: str
    placement: Placement
    profiles: Mapping[str, EnvironmentProfile]
    # Sizing for environment names the customer chooses; None where the tier has none.
    custom_profile: EnvironmentProfile | None
    features: Features
    limits: Limits
    billing: Billing
    # Scheduling priority of the tier's workloads (a PriorityClass per tier).
    priority: int
    drift_correction: DriftCorrection = DriftCorrection.AUTO

    @property
    def standard_environments(self) -> tuple[str, ...]:
        return tuple(self.profiles)

    @property
    def allows_custom_environments(self) -> bool:
        return self.custom_profile is not None

    @property
    def requires_commitment(self) -> bool:
        return isinstance(self.billing, CommittedPricing)

    @property
    def priority_class_name(self) -> str:
        return f"cameleer-tenant-{self.name}"

    def allows_environment(self, environment: str) -> bool:
        if environment in self.profiles:
            return True
        if not self.allows_custom_environments:
            return False
        try:
            validate_environment_name(environment)
        except CatalogError:
            return False
        return True

    def profile_for(self, environment: str) -> EnvironmentProfile:
        self.check_environment(environment)
        return self.profiles.get(environment) or self.custom_profile  # type: ignore[return-value]

    def quota_for(self, environment: str, committed: Compute | None = None) -> ResourceQuota:
        """The environment's quota; on committed tiers, sized from the commitment if given."""
        profile = self.profile_for(environment)
        if committed is None:
            return profile.quota
        share = self._committed_share(profile)
        self.check_commitment(committed)
        return profile.quota.with_compute(
            requests=committed.scaled(share), limits=committed.scaled(share)
        )

    def footprint(self, environments: tuple[str, ...] | None = None) -> Compute:
        """What a tenant of this tier reserves on its cluster: the sum of its environments'
        quota requests (the standard environments unless named; committed tiers at their
        minimum commitment, which is what their stacks are sized with)."""
        committed = self.billing.minimum if isinstance(self.billing, CommittedPricing) else None
        requests = [self.quota_for(env, committed).requests for env in environments or self.standard_environments]
        return Compute(sum(r.cpu_m for r in requests), sum(r.memory_mi for r in requests))

    def check_environment(self, environment: str) -> None:
        validate_environment_name(environment)
        if not self.allows_environment(environment):
            raise CatalogError(
                f"tier {self.name!r} does not offer environment {environment!r}; "
                f"allowed: {', '.join(self.standard_environments)}"
            )

    def check_environments(self, environments: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Validate a tenant's whole environment list; return it as a tuple."""
        if not environments:
            raise CatalogError(f"no environments given; tier {self.name!r} needs at least one")
        duplicates = sorted({env for env in environments if environments.count(env) > 1})
        if duplicates:
            raise CatalogError(f"environments listed twice: {', '.join(duplicates)}")
        for environment in environments:
            self.check_environment(environment)
        if len(environments) > self.limits.environments:
            raise CatalogError(
                f"tier {self.name!r} allows at most {self.limits.environments} environments, "
                f"got {len(environments)}"
            )
        return tuple(environments)

    def check_commitment(self, committed: Compute) -> None:
        if not isinstance(self.billing, CommittedPricing):
            raise CatalogError(f"tier {self.name!r} is metered; it takes no committed resources")
        minimum = self.billing.minimum
        if not minimum.fits_within(committed):
            raise CatalogError(
                f"tier {self.name!r} needs at least {cpu(minimum.cpu_m)} CPU and "
                f"{memory(minimum.memory_mi)} memory committed, got {cpu(committed.cpu_m)} CPU "
                f"and {memory(committed.memory_mi)}"
            )

    def _committed_share(self, profile: EnvironmentProfile) -> Decimal:
        if profile.committed_share is None:
            raise CatalogError(f"tier {self.name!r} is metered; it takes no committed resources")
        return profile.committed_share


# --------------------------------------------------------------------------- the data


def _profile(
    requests: tuple[int, int],
    limits: tuple[int, int],
    pods: int,
    services: int,
    pvcs: int,
    storage_gi: int,
    server: tuple[tuple[int, int], tuple[int, int]],
    container_max: tuple[int, int],
    committed_share: str | None = None,
) -> EnvironmentProfile:
    return EnvironmentProfile(
        quota=ResourceQuota(
            requests=Compute(*requests),
            limits=Compute(*limits),
            pods=pods,
            services=services,
            persistent_volume_claims=pvcs,
            storage_gi=storage_gi,
        ),
        container_defaults=ContainerDefaults(
            default_request=Compute(100, 128),
            default_limit=Compute(500, 512),
            max=Compute(*container_max),
        ),
        server=ServerSize(requests=Compute(*server[0]), limits=Compute(*server[1])),
        committed_share=Decimal(committed_share) if committed_share is not None else None,
    )


def _frozen(mapping: dict) -> Mapping:
    return MappingProxyType(mapping)


_LOW = Tier(
    name="low",
    placement=Placement.SHARED,
    profiles=_frozen({
        "prod": _profile((1000, 2048), (2000, 4096), pods=10, services=5, pvcs=2, storage_gi=10,
                         server=((250, 512), (1000, 1024)), container_max=(1000, 2048)),
    }),
    custom_profile=None,
    features=Features(topology=True, lineage=Lineage.LIMITED, correlation=False,
                      debugger=False, replay=False, sso=False, custom_roles=False),
    limits=Limits(agents=5, retention_days=7, environments=1, vaults=1, debug_sessions=0),
    billing=MeteredPricing(base_fee_monthly=Decimal("29.00"), per_cpu_core_hour=Decimal("0.040"),
                           per_ram_gb_hour=Decimal("0.005"), per_gb_ingested=Decimal("0.10"),
                           terms=BillingTerms(trial_days=14, payment_grace_days=3)),
    priority=1000,
)

_MID = Tier(
    name="mid",
    placement=Placement.SHARED,
    profiles=_frozen({
        "dev": _profile((1000, 2048), (2000, 4096), pods=10, services=5, pvcs=2, storage_gi=10,
                        server=((250, 512), (1000, 1024)), container_max=(1000, 2048)),
        "prod": _profile((2000, 4096), (4000, 8192), pods=20, services=10, pvcs=5, storage_gi=50,
                         server=((500, 1024), (2000, 2048)), container_max=(2000, 4096)),
    }),
    custom_profile=None,
    features=Features(topology=True, lineage=Lineage.FULL, correlation=True,
                      debugger=False, replay=False, sso=False, custom_roles=False),
    limits=Limits(agents=25, retention_days=30, environments=2, vaults=3, debug_sessions=0),
    billing=MeteredPricing(base_fee_monthly=Decimal("99.00"), per_cpu_core_hour=Decimal("0.035"),
                           per_ram_gb_hour=Decimal("0.0045"), per_gb_ingested=Decimal("0.08"),
                           terms=BillingTerms(trial_days=0, payment_grace_days=3)),
    priority=2000,
)


def _dedicated_profiles(scale: int) -> dict[str, EnvironmentProfile]:
    def sized(share: str, cpu_m: int, memory_mi: int, server_cpu_m: int, server_memory_mi: int):
        return _profile((cpu_m * scale, memory_mi * scale), (cpu_m * scale, memory_mi * scale),
                        pods=50 * scale, services=20, pvcs=10, storage_gi=100 * scale,
                        server=((server_cpu_m, server_memory_mi), (server_cpu_m * 2, server_memory_mi * 2)),
                        container_max=(4000, 8192), committed_share=share)
    return {
        "dev": sized("0.2", 2000, 4096, 500, 1024),
        "staging": sized("0.2", 2000, 4096, 500, 1024),
        "prod": sized("0.5", 4000, 8192, 1000, 2048),
    }


def _dedicated_custom_profile(scale: int) -> EnvironmentProfile:
    return _profile((1000 * scale, 2048 * scale), (1000 * scale, 2048 * scale),
                    pods=20 * scale, services=10, pvcs=5, storage_gi=50 * scale,
                    server=((250, 512), (500, 1024)), container_max=(4000, 8192),
                    committed_share="0.1")


_HIGH = Tier(
    name="high",
    placement=Placement.DEDICATED,
    profiles=_frozen(_dedicated_profiles(scale=1)),
    custom_profile=_dedicated_custom_profile(scale=1),
    features=Features(topology=True, lineage=Lineage.FULL, correlation=True,
                      debugger=True, replay=True, sso=True, custom_roles=True),
    limits=Limits(agents=100, retention_days=90, environments=6, vaults=10, debug_sessions=5),
    billing=CommittedPricing(per_cpu_core_month=Decimal("25.00"), per_ram_gb_month=Decimal("3.50"),
                             minimum=Compute(8000, 16384)),
    priority=3000,
    drift_correction=DriftCorrection.REPORT,
)

_BUSINESS = Tier(
    name="business",
    placement=Placement.DEDICATED,
    profiles=_frozen(_dedicated_profiles(scale=2)),
    custom_profile=_dedicated_custom_profile(scale=2),
    features=_HIGH.features,
    limits=Limits(agents=500, retention_days=None, environments=12, vaults=50, debug_sessions=20),
    billing=CommittedPricing(per_cpu_core_month=Decimal("22.00"), per_ram_gb_month=Decimal("3.00"),
                             minimum=Compute(16000, 32768), terms=BillingTerms(payment_grace_days=14)),
    priority=4000,
    drift_correction=DriftCorrection.REPORT,
)

TIERS: Mapping[str, Tier] = _frozen({tier.name: tier for tier in (_LOW, _MID, _HIGH, _BUSINESS)})


def get_tier(name: str) -> Tier:
    """The tier called `name`, or CatalogError listing the known tiers."""
    try:
        return TIERS[name]
    except (KeyError, TypeError):
        raise CatalogError(
            f"unknown tier {name!r}; known tiers: {', '.join(TIERS)}"
        ) from None


def tiers_placed(placement: Placement) -> tuple[Tier, ...]:
    """The tiers whose tenants run on clusters of this kind."""
    return tuple(tier for tier in TIERS.values() if tier.placement is placement)
