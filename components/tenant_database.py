"""A tenant environment's own schema and login role in the shared PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import naming
from components.base import Component
from components.providers.postgres import TenantSchema

DEFAULT_CONNECTION_LIMIT = 20


@dataclass(frozen=True)
class TenantDatabaseArgs:
    slug: str
    environment: str
    # Secret: the shared database's admin connection URL (stack config).
    admin_url: pulumi.Input[str]
    # Secret: the tenant role's password (from TenantCredentials).
    password: pulumi.Input[str]
    connection_limit: int = DEFAULT_CONNECTION_LIMIT

    def __post_init__(self) -> None:
        naming.database_identifier(self.slug, self.environment)


class TenantDatabase(Component):
    """`tenant_<slug>_<env>`: a LOGIN role owning a schema of the same name, nothing more.

    Both are marked as this stack's and this tenant's: a stack never adopts or drops a role or
    schema another tenant's stack (or an operator, by hand) made, and two stacks of the same
    tenant share them until the last one is destroyed (components/providers/postgres.py)."""

    identifier: str
    database: pulumi.Output[str]

    def __init__(self, name: str, args: TenantDatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:tenancy:TenantDatabase", name, opts)
        self.identifier = naming.database_identifier(args.slug, args.environment)
        schema = TenantSchema(
            f"{name}-schema",
            admin_url=args.admin_url,
            identifier=self.identifier,
            password=args.password,
            connection_limit=args.connection_limit,
            tenant=args.slug,
            # The owner recorded on the role and schema, named as on the Kubernetes objects.
            stack=f"{pulumi.get_project()}/{pulumi.get_stack()}",
            opts=self.child_options(),
        )
        self.database = schema.database
        self.register_outputs({"schema": self.identifier, "role": self.identifier, "database": self.database})
