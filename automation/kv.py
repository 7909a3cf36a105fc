"""Values the automation layer reads from the Vault-API server's KV v2 engine (OpenBao
locally), such as the tenant databases' admin connection."""

from __future__ import annotations

import hvac
import hvac.exceptions
import requests

from .errors import ErrorKind, OperationError
from .transit import unavailable


def read_field(address: str, token: str, reference: str, field: str) -> str:
    """The value of ``field`` in the latest version of ``reference`` (``<mount>/<path>``)."""
    mount, _, path = reference.partition("/")
    if not mount or not path:
        raise OperationError(ErrorKind.CONFIG, f"{reference!r} is not a KV reference of the form <mount>/<path>")
    try:
        secret = hvac.Client(url=address, token=token, timeout=10).secrets.kv.v2.read_secret_version(
            path, mount_point=mount, raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        raise OperationError(ErrorKind.CONFIG, f"{reference} does not exist in the secrets server") from None
    except hvac.exceptions.Forbidden:
        raise OperationError(ErrorKind.CONFIG, f"reading {reference}: permission denied") from None
    except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultDown) as exc:
        raise unavailable(f"reading {reference}", exc) from None
    value = secret["data"]["data"].get(field)
    if not value:
        raise OperationError(ErrorKind.CONFIG, f"{reference} has no {field!r}")
    return value
