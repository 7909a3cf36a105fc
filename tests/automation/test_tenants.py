"""A tenant as a stack (automation/tenants.py): its name, its cluster and its config."""

from __future__ import annotations

import pytest

from automation.tenants import (
    TenantPlatform,
    TenantSpec,
    TenantSpecError,
    cluster_of,
    operator_settings,
    stack_config,
    stack_name_for,
)
from automation.workspace import Secret

PLATFORM = TenantPlatform(image="ghcr.io/cameleer/server@sha256:" + "0" * 64, database_endpoint="db:5432",
                          database_admin_url="postgresql://admin:pw@db/tenants")


def spec(**overrides) -> TenantSpec:
    values = {"slug": "acme", "placement": "dedicated:dc1", "tier": "business",
              "environments": ("dev", "staging", "prod"), "license_jwt": "jwt"}
    return TenantSpec(**{**values, **overrides})


@pytest.mark.parametrize(("placement", "stack", "cluster"), [
    ("shared:eu2", "tenant-acme", "eu2"), ("dedicated:dc1", "dedicated-acme", "dc1")])
def test_a_placement_names_the_stack_and_the_cluster(placement, stack, cluster):
    assert stack_name_for("acme", placement) == stack
    assert cluster_of(placement) == cluster
    assert stack_config(spec(placement=placement, tier="low" if stack.startswith("tenant") else "business",
                             environments=("prod",)), PLATFORM)["cluster"] == cluster


@pytest.mark.parametrize("placement", ["shared", "dedicated", "moon:eu1"])
def test_a_placement_without_a_cluster_is_no_stack_config(placement):
    with pytest.raises(TenantSpecError):
        cluster_of(placement)


def test_kept_database_passwords_go_to_the_stack_as_secrets_and_never_in_the_specs_repr():
    config = stack_config(spec(database_passwords={"prod": "in-use-prod", "dev": "in-use-dev"}), PLATFORM)
    assert config["databasePassword-prod"] == Secret("in-use-prod")
    assert config["databasePassword-dev"] == Secret("in-use-dev")
    assert "databasePassword-staging" not in config
    assert "in-use" not in repr(spec(database_passwords={"prod": "in-use-prod"}))
    assert not any(key.startswith("databasePassword") for key in stack_config(spec(), PLATFORM))


def test_a_move_carries_what_operators_set_on_the_old_stack_and_nothing_the_control_plane_writes():
    old = {"cameleer:driftCorrection": "auto", "cameleer:tier": "low", "cameleer:slug": "acme",
           "cameleer:license": {"secure": "v1:abc"}, "kubernetes:context": "x"}
    new = stack_config(spec(), PLATFORM)
    assert operator_settings(old, new) == {"driftCorrection": "auto"}
