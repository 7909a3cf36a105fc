"""A tenant as a stack (automation/tenants.py): its name, its cluster and its config."""

from __future__ import annotations

import pytest

from automation.tenants import (
    TenantPlatform,
    TenantSpec,
    TenantSpecError,
    baseline_config,
    cluster_of,
    operator_settings,
    stack_config,
    stack_name_for,
)
from automation.workspace import Secret

PLATFORM = TenantPlatform(image="ghcr.io/cameleer/server@sha256:" + "0" * 64, database_endpoint="db:5432",
                          database_admin_url="postgresql://admin:pw@db/tenants",
                          secrets_address="http://openbao.example:8200", control_plane_url="https://cp.example.com")
PLATFORM_ENV = {"CAMELEER_TENANT_DATABASE_ENDPOINT": "db:5432",
                "CAMELEER_TENANT_DATABASE_ADMIN_URL": "postgresql://admin:pw@db/tenants"}


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


def test_the_server_is_told_where_openbao_and_the_control_plane_are():
    config = stack_config(spec(), PLATFORM)
    assert (config["secretsAddress"], config["controlPlaneUrl"]) == ("http://openbao.example:8200",
                                                                    "https://cp.example.com")


def test_the_addresses_come_from_the_platforms_environment():
    platform = TenantPlatform.from_env({**PLATFORM_ENV, "CAMELEER_TENANT_SECRETS_ADDRESS": "http://127.0.0.1:58200/",
                                        "CAMELEER_TENANT_CONTROL_PLANE_URL": "http://127.0.0.1:8080"})
    assert (platform.secrets_address, platform.control_plane_url) == ("http://127.0.0.1:58200", "http://127.0.0.1:8080")


@pytest.mark.parametrize("missing", ["secrets_address", "control_plane_url"])
def test_a_platform_that_has_not_said_where_they_are_gets_no_tenant_stack(missing):
    """A server that cannot reach OpenBao or the control plane cannot work: refused, not deployed."""
    from dataclasses import replace

    with pytest.raises(TenantSpecError, match="CAMELEER_TENANT_(SECRETS_ADDRESS|CONTROL_PLANE_URL) must be set"):
        stack_config(spec(), replace(PLATFORM, **{missing: None}))


def test_a_platform_without_addresses_still_gets_its_shared_cluster_baseline():
    platform = TenantPlatform.from_env({**PLATFORM_ENV, "CAMELEER_TENANT_CLUSTER_CIDRS": "10.0.0.0/8"})
    assert (platform.secrets_address, platform.control_plane_url) == (None, None)
    assert baseline_config(platform) == {"clusterCidrs": ["10.0.0.0/8"]}
    with pytest.raises(TenantSpecError, match="CAMELEER_TENANT_SECRETS_ADDRESS and CAMELEER_TENANT_CONTROL_PLANE_URL"):
        stack_config(spec(), platform)


@pytest.mark.parametrize(("value", "message"), [
    ("openbao:8200", "expected an http.s. URL"),
    ("https://root:hunter2@openbao.example", "must not contain '@'"),
])
def test_a_bad_platform_address_is_refused_naming_the_variable_and_never_a_credential(value, message):
    with pytest.raises(TenantSpecError, match=f"CAMELEER_TENANT_SECRETS_ADDRESS: .*{message}") as raised:
        TenantPlatform.from_env({**PLATFORM_ENV, "CAMELEER_TENANT_SECRETS_ADDRESS": value})
    assert "hunter2" not in str(raised.value)
