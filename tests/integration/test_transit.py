"""Per-stack transit keys on the real local OpenBao (scripts/services.sh runs it)."""

from __future__ import annotations

import uuid

import hvac
import hvac.exceptions
import pytest

from automation.errors import ErrorKind, OperationError
from automation.transit import TransitKeys, key_name
from tests.conftest import require_env


@pytest.fixture(scope="module")
def transit() -> TransitKeys:
    return TransitKeys(require_env("VAULT_ADDR"), require_env("VAULT_TOKEN"))


def test_a_stack_key_is_created_once_encrypts_and_is_destroyed_for_good(transit):
    stack = f"tenant-tk{uuid.uuid4().hex[:8]}"
    assert transit.ensure(stack) == key_name(stack) == transit.ensure(stack)  # idempotent
    client = hvac.Client(url=transit.address, token=transit.token)
    key = client.secrets.transit.read_key(key_name(stack))["data"]
    assert (key["type"], key["deletion_allowed"], key["exportable"]) == ("aes256-gcm96", False, False)
    sealed = client.secrets.transit.encrypt_data(key_name(stack), "c2VjcmV0")["data"]["ciphertext"]

    assert transit.destroy(stack) is True
    assert not transit.exists(stack)
    with pytest.raises(hvac.exceptions.InvalidRequest):  # the ciphertext is now noise
        client.secrets.transit.decrypt_data(key_name(stack), sealed)
    assert transit.destroy(stack) is False  # a retried delete


def test_an_unreachable_secrets_server_is_a_transient_error(transit):
    down = TransitKeys("http://127.0.0.1:9", transit.token)
    with pytest.raises(OperationError) as raised:
        down.ensure("tenant-nowhere")
    assert raised.value.kind is ErrorKind.TRANSIENT and "unreachable" in str(raised.value)
    assert transit.token not in str(raised.value)


def test_the_tenant_databases_admin_is_read_from_openbao_and_is_no_superuser(transit):
    """services.env names a KV reference, not a URL: the stacks get a CREATEROLE-only role
    that logs in with the password OpenBao holds, and with nothing else."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from automation.tenants import TenantPlatform

    reference = require_env("CAMELEER_TENANT_DATABASE_ADMIN_SECRET")
    env = {"CAMELEER_TENANT_DATABASE_ADMIN_SECRET": reference, "CAMELEER_TENANT_DATABASE_ENDPOINT": "127.0.0.1:1",
           "VAULT_ADDR": transit.address, "VAULT_TOKEN": transit.token}
    url = TenantPlatform.from_env(env).database_admin_url
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
                            " WHERE rolname = current_user").fetchone() == (False, True, False, False)
    without_password = make_conninfo(url, password="")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without_password, connect_timeout=5).close()
    assert conninfo_to_dict(url)["dbname"] == "cameleer_tenants"

    with pytest.raises(OperationError) as missing:
        TenantPlatform.from_env({**env, "CAMELEER_TENANT_DATABASE_ADMIN_SECRET": f"platform/none-{uuid.uuid4().hex}"})
    assert missing.value.kind is ErrorKind.CONFIG and "does not exist" in str(missing.value)
    with pytest.raises(OperationError) as down:
        TenantPlatform.from_env({**env, "VAULT_ADDR": "http://127.0.0.1:9"})
    assert down.value.kind is ErrorKind.TRANSIENT
