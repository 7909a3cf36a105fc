"""Which OpenBao Kubernetes auth mount serves a cluster's tenant servers: one rule
(components.naming.secrets_auth_mount), applied by the control plane's grants
(api/tenant_secrets.py) and by the tenant stacks' config (automation/tenants.py)."""

from __future__ import annotations

import pytest

from automation.tenants import TenantPlatform, TenantSpec, stack_config
from components.naming import secrets_auth_mount

PLATFORM = {"CAMELEER_TENANT_DATABASE_ENDPOINT": "db.example:5432",
            "CAMELEER_TENANT_DATABASE_ADMIN_URL": "postgresql://admin:pw@db.example:5432/postgres",
            "CAMELEER_TENANT_SECRETS_ADDRESS": "http://openbao.example:8200",
            "CAMELEER_TENANT_CONTROL_PLANE_URL": "https://cp.example.com"}


def test_the_platforms_own_cluster_has_the_configured_mount_every_other_one_its_own():
    assert secrets_auth_mount("eu1", platform_cluster="eu1") == "kubernetes"
    assert secrets_auth_mount("eu2", platform_cluster="eu1") == "kubernetes-eu2"
    assert secrets_auth_mount("dc1", platform_cluster="eu1", mount="k8s") == "k8s-dc1"
    assert secrets_auth_mount("eu1", platform_cluster="eu2") == "kubernetes-eu1"


def config_for(placement: str, **environ: str) -> dict:
    spec = TenantSpec(slug="acme", placement=placement, tier="mid", environments=("prod",), license_jwt="jwt")
    return stack_config(spec, TenantPlatform.from_env({**PLATFORM, **environ}))


@pytest.mark.parametrize("placement, mount", [("shared:eu2", "kubernetes-eu2"), ("dedicated:dc1", "kubernetes-dc1")])
def test_a_tenant_on_another_cluster_is_told_that_clusters_mount(placement, mount):
    assert config_for(placement)["secretsAuthMount"] == mount


def test_a_tenant_of_the_platforms_own_cluster_gets_the_config_it_had():
    assert "secretsAuthMount" not in config_for("shared:eu1")


def test_a_configured_mount_and_platform_cluster_are_followed():
    assert config_for("shared:eu1", CAMELEER_VAULT_KUBERNETES_MOUNT="k8s")["secretsAuthMount"] == "k8s"
    assert config_for("shared:eu2", CAMELEER_CLUSTER="eu2").get("secretsAuthMount") is None
    assert config_for("shared:eu1", CAMELEER_CLUSTER="eu2")["secretsAuthMount"] == "kubernetes-eu1"
