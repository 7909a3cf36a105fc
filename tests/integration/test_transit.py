"""Per-stack transit keys on the real local OpenBao (scripts/services.sh runs it)."""

from __future__ import annotations

import uuid

import hvac
import hvac.exceptions
import pytest

from automation.errors import ErrorKind, OperationError
from automation.transit import TransitKeys, key_name
from tests.integration.conftest import _require_env


@pytest.fixture(scope="module")
def transit() -> TransitKeys:
    return TransitKeys(_require_env("VAULT_ADDR"), _require_env("VAULT_TOKEN"))


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
