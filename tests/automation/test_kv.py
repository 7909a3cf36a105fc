"""automation.kv: stacks.kv's reader with its errors as the engine's OperationErrors (the
secrets server itself is exercised in tests/integration)."""

from __future__ import annotations

import pytest

from automation.errors import ErrorKind, OperationError
from automation.kv import read_field


def test_an_unreachable_secrets_server_is_transient_and_never_shows_the_token():
    with pytest.raises(OperationError) as raised:
        read_field("http://127.0.0.1:9", "s.kv-test-token", "platform/tenant-database", "url")
    assert raised.value.kind is ErrorKind.TRANSIENT and raised.value.retry_after
    assert "reading platform/tenant-database: the secrets server is unreachable" in str(raised.value)
    assert "s.kv-test-token" not in str(raised.value)


def test_a_malformed_reference_is_a_config_error():
    with pytest.raises(OperationError) as raised:
        read_field("http://127.0.0.1:9", "s.kv-test-token", "platform", "url")
    assert raised.value.kind is ErrorKind.CONFIG and "<mount>/<path>" in str(raised.value)
