from decimal import Decimal

import pytest

from components import catalog
from components.catalog import (
    CatalogError,
    CommittedPricing,
    Compute,
    Lineage,
    MeteredPricing,
    Placement,
    get_tier,
    parse_cpu,
    parse_memory,
    tiers_placed,
    validate_environment_name,
    validate_slug,
)


def test_four_tiers_with_their_placement():
    assert {name: tier.placement for name, tier in catalog.TIERS.items()} == {
        "low": Placement.SHARED, "mid": Placement.SHARED,
        "high": Placement.DEDICATED, "business": Placement.DEDICATED,
    }
    assert [t.name for t in tiers_placed(Placement.SHARED)] == ["low", "mid"]


def test_unknown_tier_lists_the_known_ones():
    with pytest.raises(CatalogError, match=r"unknown tier 'gold'; known tiers: low, mid, high, business"):
        get_tier("gold")


@pytest.mark.parametrize("tier, standard, custom", [
    ("low", ("prod",), False),
    ("mid", ("dev", "prod"), False),
    ("high", ("dev", "staging", "prod"), True),
    ("business", ("dev", "staging", "prod"), True),
])
def test_environments_per_tier(tier, standard, custom):
    t = get_tier(tier)
    assert t.standard_environments == standard
    assert t.allows_custom_environments is custom
    assert t.allows_environment("qa") is custom
    assert t.allows_environment("prod")


def test_custom_environment_names_must_be_well_formed_even_where_allowed():
    high = get_tier("high")
    assert not high.allows_environment("QA")
    with pytest.raises(CatalogError, match="lowercase letters and digits"):
        high.check_environment("qa-1")


def test_environment_not_offered_names_the_allowed_ones():
    with pytest.raises(CatalogError, match=r"tier 'mid' does not offer environment 'staging'; allowed: dev, prod$"):
        get_tier("mid").check_environment("staging")
    with pytest.raises(CatalogError, match=r"tier 'low' does not offer environment 'dev'; allowed: prod$"):
        get_tier("low").profile_for("dev")


def test_environment_list_checks_duplicates_and_the_limit():
    mid = get_tier("mid")
    assert mid.check_environments(["dev", "prod"]) == ("dev", "prod")
    with pytest.raises(CatalogError, match="listed twice: prod"):
        mid.check_environments(["prod", "prod"])
    with pytest.raises(CatalogError, match="at least one"):
        mid.check_environments([])
    with pytest.raises(CatalogError, match="at most 6 environments, got 7"):
        get_tier("high").check_environments(["dev", "staging", "prod", "qa", "uat", "perf", "demo"])


@pytest.mark.parametrize("tier, days", [("low", 7), ("mid", 30), ("high", 90), ("business", None)])
def test_retention(tier, days):
    assert get_tier(tier).limits.retention_days == days


def test_custom_retention_is_set_per_contract_only_where_custom():
    assert get_tier("business").limits.with_retention(400).retention_days == 400
    with pytest.raises(CatalogError, match="fixed at 90 days"):
        get_tier("high").limits.with_retention(400)


def test_features_grow_with_the_tier():
    low, mid, high = (get_tier(n).features for n in ("low", "mid", "high"))
    assert low.topology and low.lineage is Lineage.LIMITED and not low.correlation
    assert mid.lineage is Lineage.FULL and mid.correlation and not mid.debugger
    assert high.debugger and high.replay and high.sso and high.custom_roles
    assert get_tier("business").features == high
    assert low.as_claims()["lineage"] == "limited"


def test_billing_models():
    low, high = get_tier("low").billing, get_tier("high").billing
    assert isinstance(low, MeteredPricing) and low.kind == "metered"
    assert low.base_fee_monthly > 0 and low.per_cpu_core_hour > 0
    assert low.per_ram_gb_hour > 0 and low.per_gb_ingested > 0
    assert isinstance(high, CommittedPricing) and high.kind == "committed"
    assert high.monthly_price(Compute(8000, 16384)) == 8 * high.per_cpu_core_month + 16 * high.per_ram_gb_month
    assert get_tier("high").requires_commitment and not get_tier("mid").requires_commitment


def test_quota_renders_a_resource_quota_spec():
    hard = get_tier("low").quota_for("prod").hard()
    assert hard["limits.cpu"] == "2" and hard["limits.memory"] == "4Gi"
    assert hard["requests.cpu"] == "1" and hard["pods"] == "10"
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"


def test_mid_prod_is_bigger_than_mid_dev():
    mid = get_tier("mid")
    assert mid.quota_for("dev").limits.fits_within(mid.quota_for("prod").limits)
    assert mid.quota_for("dev") != mid.quota_for("prod")


def test_committed_resources_size_the_dedicated_quota():
    high = get_tier("high")
    quota = high.quota_for("prod", Compute.parse("10", "20Gi"))
    assert quota.hard()["limits.cpu"] == "5" and quota.hard()["limits.memory"] == "10Gi"
    assert high.quota_for("qa", Compute.parse("10", "20Gi")).hard()["limits.cpu"] == "1"


def test_commitment_below_the_minimum_or_on_a_metered_tier_is_refused():
    with pytest.raises(CatalogError, match="needs at least 8 CPU and 16Gi memory committed, got 4 CPU"):
        get_tier("high").quota_for("prod", Compute.parse(4, "16Gi"))
    with pytest.raises(CatalogError, match="metered; it takes no committed resources"):
        get_tier("low").quota_for("prod", Compute.parse(8, "16Gi"))


def _committed_cases():
    for tier in catalog.TIERS.values():
        commitment = tier.billing.minimum if isinstance(tier.billing, CommittedPricing) else None
        for env in (*tier.standard_environments, *(("custom1",) if tier.allows_custom_environments else ())):
            yield tier, env, commitment


@pytest.mark.parametrize("tier, env, commitment", list(_committed_cases()),
                         ids=lambda v: getattr(v, "name", None) or str(v))
def test_the_server_fits_its_limit_range_and_quota(tier, env, commitment):
    profile = tier.profile_for(env)
    quota = tier.quota_for(env, commitment)
    assert profile.server.limits.fits_within(profile.container_defaults.max)
    assert profile.server.limits.fits_within(quota.limits)
    assert profile.server.requests.fits_within(quota.requests)
    assert profile.container_defaults.default_limit.fits_within(profile.container_defaults.max)


def test_limit_range_spec():
    (limits,) = get_tier("low").profile_for("prod").container_defaults.limits()
    assert limits["type"] == "Container"
    assert limits["max"] == {"cpu": "1", "memory": "2Gi"}
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


def test_tiers_are_immutable():
    with pytest.raises(Exception):
        get_tier("low").priority = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        get_tier("low").profiles["dev"] = get_tier("mid").profiles["dev"]  # type: ignore[index]


@pytest.mark.parametrize("slug", ["acme", "a", "acme-corp", "9lives", "a" * catalog.MAX_SLUG_LENGTH])
def test_valid_slugs(slug):
    assert validate_slug(slug) == slug


@pytest.mark.parametrize("slug, message", [
    ("", "empty"),
    ("Acme", "not a DNS-1123 label"),
    ("acme_corp", "not a DNS-1123 label"),
    ("-acme", "not a DNS-1123 label"),
    ("acme-", "not a DNS-1123 label"),
    ("a" * (catalog.MAX_SLUG_LENGTH + 1), "at most 43 are allowed"),
])
def test_invalid_slugs(slug, message):
    with pytest.raises(CatalogError, match=message):
        validate_slug(slug)


def test_longest_slug_and_environment_make_a_legal_namespace():
    name = f"tenant-{'a' * catalog.MAX_SLUG_LENGTH}-{'e' * catalog.MAX_ENVIRONMENT_LENGTH}"
    assert len(name) == 63


@pytest.mark.parametrize("name", ["", "Prod", "1dev", "dev-1", "d" * 13])
def test_invalid_environment_names(name):
    with pytest.raises(CatalogError):
        validate_environment_name(name)


def test_catalog_error_is_a_value_error():
    assert issubclass(CatalogError, ValueError)


@pytest.mark.parametrize("text, millicores", [("8", 8000), ("0.5", 500), ("1500m", 1500), (2, 2000)])
def test_parse_cpu(text, millicores):
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize("text, mebibytes", [("512Mi", 512), ("16Gi", 16384), ("1Ti", 1048576)])
def test_parse_memory(text, mebibytes):
    assert parse_memory(text) == mebibytes


@pytest.mark.parametrize("bad", ["8 cores", "-1", "1.5.2"])
def test_bad_cpu_quantities(bad):
    with pytest.raises(CatalogError, match="is not a quantity like '8'"):
        parse_cpu(bad)


@pytest.mark.parametrize("bad", ["16GB", "16", "1.5Gi"])
def test_bad_memory_quantities(bad):
    with pytest.raises(CatalogError, match="is not a quantity like '512Mi'"):
        parse_memory(bad)


def test_prices_are_decimals():
    assert isinstance(get_tier("mid").billing.per_gb_ingested, Decimal)


def test_catalog_has_no_pulumi_dependency():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(catalog))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "pulumi" not in imported
