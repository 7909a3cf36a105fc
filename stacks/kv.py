"""One field of a secret in the Vault-API server's KV v2 engine (OpenBao locally), such as a
registered cluster's kubeconfig or the tenant databases' admin connection.

Errors name the reference, never the value or the token."""

from __future__ import annotations

import hvac
import hvac.exceptions
import requests


class KVError(LookupError):
    """The field cannot be read: a bad reference, a missing secret or field, no permission."""


class KVMissing(KVError):
    """No secret at the reference."""


class KVUnavailable(KVError):
    """The secrets server did not answer, or is sealed: trying again later can help."""


def read_field(address: str, token: str, reference: str, field: str) -> str:
    """The value of ``field`` in the latest version of ``reference`` (``<mount>/<path>``)."""
    mount, _, path = reference.partition("/")
    if not mount or not path:
        raise KVError(f"{reference!r} is not a KV reference of the form <mount>/<path>")
    try:
        secret = hvac.Client(url=address, token=token, timeout=10).secrets.kv.v2.read_secret_version(
            path, mount_point=mount, raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        raise KVMissing(f"{reference} does not exist in the secrets server") from None
    except hvac.exceptions.Forbidden:
        raise KVError(f"reading {reference}: permission denied") from None
    except hvac.exceptions.VaultDown:
        raise KVUnavailable(f"reading {reference}: the secrets server is sealed") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise KVUnavailable(f"reading {reference}: the secrets server is unreachable ({type(exc).__name__})") from None
    value = secret["data"]["data"].get(field)
    if not value:
        raise KVError(f"{reference} has no {field!r}")
    return value
