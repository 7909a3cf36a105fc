import pulumi
import pytest

from components.catalog import CatalogError
from components.tenant_database import TenantDatabase, TenantDatabaseArgs
from tests.unit.component_fixtures import ADMIN_URL
from tests.unit.pulumi_mocks import is_secret_value, run, unwrap_secret, use_mocks

SCHEMA_TYPE = "pulumi-python:dynamic/postgres:TenantSchema"


def build(slug="acme-corp", environment="prod"):
    mocks = use_mocks()
    component = run(lambda: TenantDatabase("prod-database", TenantDatabaseArgs(
        slug=slug, environment=environment, admin_url=pulumi.Output.secret(ADMIN_URL), password="pw")))
    return mocks, component


def test_one_schema_resource_parented_to_the_component():
    mocks, component = build()
    assert len(mocks.by_type("cameleer:tenancy:TenantDatabase")) == 1
    (schema,) = mocks.children_of("prod-database")
    assert schema.type == SCHEMA_TYPE
    assert component.identifier == "tenant_acme_corp_prod"


def test_identifier_is_a_postgres_identifier_per_environment():
    mocks, _ = build(environment="prod")
    (schema,) = mocks.by_type(SCHEMA_TYPE)
    assert schema.inputs["identifier"] == "tenant_acme_corp_prod"
    assert "-" not in schema.inputs["identifier"]


def test_admin_url_and_password_are_secrets_in_state():
    mocks, _ = build()
    (schema,) = mocks.by_type(SCHEMA_TYPE)
    assert is_secret_value(schema.inputs["admin_url"]) and is_secret_value(schema.inputs["password"])
    assert unwrap_secret(schema.inputs["password"]) == "pw"
    assert set(schema.additional_secret_outputs) == {"admin_url", "password"}


def test_connection_limit_is_set():
    mocks, _ = build()
    (schema,) = mocks.by_type(SCHEMA_TYPE)
    assert schema.inputs["connection_limit"] == 20


def test_bad_slug_is_refused():
    with pytest.raises(CatalogError):
        TenantDatabaseArgs(slug="Acme", environment="prod", admin_url=ADMIN_URL, password="pw")


def test_the_owner_recorded_on_the_objects_is_this_stack_and_tenant():
    mocks, _ = build(slug="acme-corp")
    (schema,) = mocks.by_type(SCHEMA_TYPE)
    assert schema.inputs["tenant"] == "acme-corp"
    assert schema.inputs["stack"] == "cameleer/tenant-demo"
