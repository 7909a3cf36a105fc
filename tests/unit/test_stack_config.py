from pathlib import Path

import pytest
import yaml

from components.catalog import Compute
from stacks.config import (
    StackConfigError,
    StackKind,
    parse_stack_name,
    shared_cluster_settings,
    tenant_settings,
)

IMAGE = "ghcr.io/cameleer/server@sha256:" + "ab" * 32
SECRETS = {"databaseAdminUrl": True, "license": True}


def raw(**overrides):
    values = {"tier": "mid", "environments": '["dev", "prod"]', "image": IMAGE,
              "databaseEndpoint": "203.0.113.10:5432"}
    return {key: value for key, value in {**values, **overrides}.items() if value is not None}


def settings(stack="tenant-demo", secrets=SECRETS, **overrides):
    return tenant_settings(parse_stack_name(stack), raw(**overrides), secrets)


def error_of(**kwargs) -> str:
    with pytest.raises(StackConfigError) as raised:
        settings(**kwargs)
    return str(raised.value)


@pytest.mark.parametrize("stack, kind, subject", [
    ("tenant-demo", StackKind.TENANT, "demo"),
    ("dedicated-acme-corp", StackKind.DEDICATED, "acme-corp"),
    ("shared-eu1", StackKind.SHARED, "eu1"),
])
def test_stack_names(stack, kind, subject):
    name = parse_stack_name(stack)
    assert (name.kind, name.subject, str(name)) == (kind, subject, stack)


@pytest.mark.parametrize("stack, message", [
    ("dev", "is not one of tenant-<name>, dedicated-<name>, shared-<name>"),
    ("customer-acme", "is not one of"),
    ("tenant-", "slug is empty"),
    ("tenant-Acme", "DNS-1123"),
])
def test_bad_stack_names(stack, message):
    with pytest.raises(StackConfigError, match=message):
        parse_stack_name(stack)


def test_config_error_is_a_run_error_so_pulumi_prints_only_the_message():
    import pulumi

    assert issubclass(StackConfigError, pulumi.RunError)


def test_valid_tenant_config():
    result = settings()
    assert result.slug == "demo" and result.tier.name == "mid"
    assert result.environments == ("dev", "prod")
    assert result.database.cidr == "203.0.113.10/32"
    assert result.suspended is False and result.committed is None


def test_environments_default_to_prod():
    assert settings(environments=None).environments == ("prod",)


def test_suspended_and_lists_accept_cli_text_and_yaml_values():
    result = settings(suspended="true", environments=["prod"], clusterCidrs='["10.96.0.0/12"]')
    assert result.suspended is True and result.environments == ("prod",) and result.cluster_cidrs == ("10.96.0.0/12",)


def test_unknown_tier():
    assert "cameleer:tier: unknown tier 'gold'; known tiers: low, mid, high, business" in error_of(tier="gold")


def test_environment_the_tier_does_not_offer():
    message = error_of(tier="low", environments='["dev", "prod"]')
    assert "cameleer:environments: tier 'low' does not offer environment 'dev'; allowed: prod" in message


def test_slug_must_match_the_stack_name():
    message = error_of(slug="other")
    assert "cameleer:slug: 'other' does not match the stack name 'tenant-demo' (slug 'demo')" in message


def test_shared_tier_on_a_dedicated_stack_names_the_right_stack():
    message = error_of(stack="dedicated-demo")
    assert "tier 'mid' runs on a shared cluster; its stack is tenant-demo, not dedicated-demo" in message


def test_dedicated_tier_on_a_tenant_stack():
    message = error_of(tier="high", environments='["prod"]')
    assert "its stack is dedicated-demo, not tenant-demo" in message


def test_unpinned_image():
    assert "cameleer:image: image 'ghcr.io/cameleer/server:1.0' is not pinned by digest" in error_of(
        image="ghcr.io/cameleer/server:1.0")


def test_missing_keys_and_secrets_are_all_reported_at_once():
    message = error_of(image=None, databaseEndpoint=None, secrets={"license": True})
    assert message.startswith("invalid configuration for stack tenant-demo:\n")
    assert "cameleer:image: missing; set it with `pulumi config set cameleer:image ...`" in message
    assert "cameleer:databaseEndpoint: missing" in message
    assert "cameleer:databaseAdminUrl: missing; set it with `pulumi config set --secret" in message
    assert "cameleer:license" not in message
    assert message.count("\n  - ") == 3


def test_bad_suspended_value():
    assert "cameleer:suspended: expected true or false, got 'yes'" in error_of(suspended="yes")


def test_bad_cluster_cidr():
    assert "cameleer:clusterCidrs:" in error_of(clusterCidrs='["10.0.0.1/8"]')


def test_dedicated_tier_requires_and_checks_its_commitment():
    base = dict(stack="dedicated-acme", tier="high", environments='["dev", "prod"]')
    assert "cameleer:committed: missing; tier 'high' is billed on committed resources" in error_of(**base)
    assert "needs at least 8 CPU" in error_of(**base, committed='{"cpu": "2", "memory": "4Gi"}')
    result = settings(**base, committed={"cpu": "16", "memory": "32Gi"})
    assert result.committed == Compute(16000, 32768)


def test_metered_tier_refuses_a_commitment():
    assert "metered; it takes no committed resources" in error_of(committed='{"cpu": "8", "memory": "16Gi"}')


def test_shared_cluster_settings():
    result = shared_cluster_settings(parse_stack_name("shared-eu1"), {"clusterCidrs": '["10.96.0.0/12"]'})
    assert result.cluster == "eu1" and result.cluster_cidrs == ("10.96.0.0/12",)


# The committed examples; stacks the control plane creates write their own (untracked) files here.
EXAMPLE_STACK_CONFIGS = ("Pulumi.tenant-demo.yaml", "Pulumi.dedicated-acme.yaml", "Pulumi.shared-eu1.yaml")


@pytest.mark.parametrize("path", [Path(__file__).resolve().parents[2] / "stacks" / "config" / name
                                  for name in EXAMPLE_STACK_CONFIGS], ids=lambda p: p.name)
def test_example_stack_configs_are_valid_and_hold_no_secrets(path):
    document = yaml.safe_load(path.read_text())
    values = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    assert not any(isinstance(value, dict) and "secure" in value for value in values.values())
    assert not (set(values) & {"databaseAdminUrl", "license"})
    stack = parse_stack_name(path.name.removeprefix("Pulumi.").removesuffix(".yaml"))
    if stack.kind is StackKind.SHARED:
        shared_cluster_settings(stack, values)
    else:
        assert tenant_settings(stack, values, SECRETS).slug == stack.subject
