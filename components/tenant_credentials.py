"""Per-tenant credentials: a password, generated unless given, delivered as a Kubernetes Secret.

A given password is how a tenant's credentials survive a move to another stack: the new
stack takes over the tenant's database role with the password its running servers use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi

from components.base import Component
from components.kube import manifest
from components.cluster import Cluster
from components.providers.random import RandomPassword

PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class TenantCredentialsArgs:
    cluster: Cluster
    namespace: str
    secret_name: str
    username: str
    # Further non-secret keys for the Secret, e.g. host, port, database.
    extra_data: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Secret: the password to deliver instead of a generated one.
    password: pulumi.Input[str] | None = None


class TenantCredentials(Component):
    """`password` is a secret Output; the Secret holds `username`, `password` and the extras."""

    password: pulumi.Output[str]
    secret_name: str

    def __init__(self, name: str, args: TenantCredentialsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:tenancy:TenantCredentials", name, opts)
        if args.password is None:
            password = RandomPassword(f"{name}-password", length=PASSWORD_LENGTH, opts=self.child_options()).result
        else:
            password = args.password
        self.password = pulumi.Output.secret(password)
        self.secret_name = args.secret_name
        self.kube_object(f"{name}-secret", args.cluster, credentials_secret(args, self.password))
        self.register_outputs({"secretName": self.secret_name})


def credentials_secret(args: TenantCredentialsArgs, password: pulumi.Input[str]) -> dict:
    return manifest(
        "v1", "Secret", args.secret_name, namespace=args.namespace, labels=dict(args.labels),
        type="Opaque",
        stringData={**args.extra_data, "username": args.username, "password": password},
    )
