"""Values the automation layer reads from the Vault-API server's KV v2 engine (OpenBao
locally), such as the tenant databases' admin connection: stacks.kv's reader, its errors
as the engine's `OperationError`s."""

from __future__ import annotations

from stacks import kv

from .errors import ErrorKind, OperationError


def read_field(address: str, token: str, reference: str, field: str) -> str:
    """The value of ``field`` in the latest version of ``reference`` (``<mount>/<path>``)."""
    try:
        return kv.read_field(address, token, reference, field)
    except kv.KVUnavailable as exc:
        raise OperationError(ErrorKind.TRANSIENT, str(exc), retry_after=10.0) from None
    except kv.KVError as exc:
        raise OperationError(ErrorKind.CONFIG, str(exc)) from None
