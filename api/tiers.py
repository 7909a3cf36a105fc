"""The API's view of the tier catalog (``components.catalog``): lookups that answer with
problem details instead of ``CatalogError``. No tier data lives here."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.catalog import MAX_SLUG_LENGTH, SLUG_PATTERN, TIERS, CatalogError, Tier, get_tier, validate_slug

from api.problems import Problem

# The schema states the catalog's rules; the handlers check them and answer the clearer
# `/problems/invalid-slug` and `/problems/unknown-tier` (pydantic bounds only the size).
SlugField = Annotated[str, Field(
    min_length=1, max_length=63, json_schema_extra={"maxLength": MAX_SLUG_LENGTH, "pattern": SLUG_PATTERN},
    description="A DNS-1123 label (lowercase letters, digits, '-') of at most "
                f"{MAX_SLUG_LENGTH} characters; else 422 `/problems/invalid-slug`")]
TierName = Annotated[str, Field(
    max_length=64, json_schema_extra={"enum": list(TIERS)},
    description="A tier of the catalog; else 422 `/problems/unknown-tier`")]


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


def placement_kind(tier: Tier) -> str:
    """Where a tenant of ``tier`` runs before its cluster is chosen: ``shared`` or
    ``dedicated``. The operation's ``place`` step picks the cluster (api.clusters.assign)."""
    return tier.placement.value


def tier_change_params(tier: Tier, current_placement: str) -> tuple[dict[str, str], bool]:
    """The params of a change to ``tier`` from ``current_placement``, and whether it moves the
    tenant between shared and dedicated clusters (the target cluster is chosen by the move's
    ``place`` step; a change within a kind stays on the tenant's cluster)."""
    moves = placement_kind(tier) != current_placement.partition(":")[0]
    placement = placement_kind(tier) if moves else current_placement
    return {"tier": tier.name, "placement": placement, "from_placement": current_placement}, moves


def environments_of(tier: Tier) -> tuple[str, ...]:
    return tier.standard_environments
