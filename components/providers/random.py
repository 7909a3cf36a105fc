"""Random secrets as Pulumi resources, through a dynamic provider.

Stands in for pulumi-random's `RandomPassword`, whose provider plugin cannot be built from
the Go module proxy here (403 for every `github.com/pulumi/pulumi-random/provider/v4`
version). Same contract: generated once on create from the OS's CSPRNG, kept in state as a
secret, regenerated only when its inputs change (or `keepers` change).
"""

from __future__ import annotations

import secrets
import string
from typing import Mapping

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

_ALPHABET_LETTERS_DIGITS = string.ascii_letters + string.digits
_SPECIALS = "-_.~!#%^*+="  # safe in URLs, DSNs and shell-quoted env files


class RandomPasswordProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props: dict) -> CreateResult:
        alphabet = _ALPHABET_LETTERS_DIGITS + (_SPECIALS if props.get("special") else "")
        length = int(props["length"])
        result = "".join(secrets.choice(alphabet) for _ in range(length))
        return CreateResult(secrets.token_hex(8), {**props, "result": result})

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        inputs = ("length", "special", "keepers")
        changed = [key for key in inputs if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)


class RandomPassword(Resource, module="random", name="RandomPassword"):
    """A random password; `result` is a secret Output."""

    result: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        length: int = 32,
        special: bool = False,
        keepers: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if length < 16:
            raise ValueError(f"RandomPassword {resource_name!r}: length must be at least 16, got {length}")
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"]))
        props = {"length": length, "special": special, "keepers": dict(keepers or {}), "result": None}
        super().__init__(RandomPasswordProvider(), resource_name, props, opts)
