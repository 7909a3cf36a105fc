from components.tenant_credentials import TenantCredentials, TenantCredentialsArgs
from tests.unit.component_fixtures import cluster
from tests.unit.pulumi_mocks import is_secret, is_secret_value, run, unwrap_secret, use_mocks


def build():
    mocks = use_mocks()
    component = run(lambda: TenantCredentials("prod-credentials", TenantCredentialsArgs(
        cluster=cluster(), namespace="tenant-demo-prod", secret_name="cameleer-database",
        username="tenant_demo_prod", extra_data={"host": "db.internal", "port": "5432"},
        labels={"cameleer.io/tenant": "demo"})))
    return mocks, component


def test_random_password_and_secret_are_children():
    mocks, _ = build()
    assert len(mocks.by_type("cameleer:tenancy:TenantCredentials")) == 1
    types = sorted(child.type for child in mocks.children_of("prod-credentials"))
    assert types == ["kubernetes:core/v1:Secret", "pulumi-python:dynamic/random:RandomPassword"]
    (password,) = mocks.by_type("pulumi-python:dynamic/random:RandomPassword")
    assert password.inputs["length"] >= 32


def test_secret_carries_the_generated_password_and_connection_details():
    mocks, _ = build()
    secret = mocks.one("Secret", "cameleer-database")
    assert secret["metadata"]["namespace"] == "tenant-demo-prod"
    assert secret["metadata"]["labels"] == {"cameleer.io/tenant": "demo"}
    assert secret["type"] == "Opaque"
    assert secret["stringData"] == {"host": "db.internal", "port": "5432", "username": "tenant_demo_prod",
                                    "password": "generated-password"}


def test_password_output_is_secret():
    _, component = build()
    assert is_secret(component.password)


def test_secret_data_is_kept_secret_in_state():
    mocks, _ = build()
    (secret,) = mocks.kube("Secret")
    assert is_secret_value(secret.inputs["stringData"])
    assert unwrap_secret(secret.inputs["stringData"])["password"] == "generated-password"
    assert {"data", "stringData"} <= set(secret.additional_secret_outputs)
    # Nothing else of the Secret carries the password in plain.
    plain = {key: value for key, value in secret.inputs.items() if key != "stringData"}
    assert "generated-password" not in repr(plain)


def test_secret_is_on_the_cluster_provider():
    mocks, _ = build()
    (secret,) = mocks.kube("Secret")
    assert mocks.provider_of(secret).name == "cluster-test"


def test_a_given_password_is_delivered_and_none_is_generated():
    """A moved tenant's new stack keeps the password its servers use."""
    mocks = use_mocks()
    component = run(lambda: TenantCredentials("prod-credentials", TenantCredentialsArgs(
        cluster=cluster(), namespace="tenant-demo-prod", secret_name="cameleer-database",
        username="tenant_demo_prod", password="the-password-in-use")))
    assert mocks.by_type("pulumi-python:dynamic/random:RandomPassword") == []
    (secret,) = mocks.kube("Secret")
    assert is_secret_value(secret.inputs["stringData"])
    assert unwrap_secret(secret.inputs["stringData"])["password"] == "the-password-in-use"
    assert is_secret(component.password)
