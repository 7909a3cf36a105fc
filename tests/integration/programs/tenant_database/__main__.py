"""A tenant environment's schema and role, nothing else: the project's TenantDatabase
component with the stack's config (namespace `cameleer`): slug, environment, and the
secrets databaseAdminUrl and password."""

import pulumi

from components.tenant_database import TenantDatabase, TenantDatabaseArgs

config = pulumi.Config("cameleer")
database = TenantDatabase("database", TenantDatabaseArgs(
    slug=config.require("slug"), environment=config.require("environment"),
    admin_url=config.require_secret("databaseAdminUrl"), password=config.require_secret("password")))
pulumi.export("identifier", database.identifier)
