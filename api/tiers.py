"""The API's view of the tier catalog (``components.catalog``): lookups that answer with
problem details instead of ``CatalogError``. No tier data lives here."""

from __future__ import annotations

from components.catalog import CatalogError, Placement, Tier, get_tier, validate_slug

from api.problems import Problem

SHARED_CLUSTER = "eu1"


def tier_named(name: str) -> Tier:
    try:
        return get_tier(name)
    except CatalogError as exc:
        raise Problem(422, "unknown-tier", str(exc)) from exc


def checked_slug(slug: str) -> str:
    try:
        return validate_slug(slug)
    except CatalogError as exc:
        raise Problem(422, "invalid-slug", str(exc)) from exc


def placement_for(tier: Tier, slug: str) -> str:
    """Where a tenant of ``tier`` runs: the shared cluster, or its own dedicated cluster."""
    if tier.placement is Placement.SHARED:
        return f"{Placement.SHARED.value}:{SHARED_CLUSTER}"
    return f"{Placement.DEDICATED.value}:{slug}"


def environments_of(tier: Tier) -> tuple[str, ...]:
    return tier.standard_environments
