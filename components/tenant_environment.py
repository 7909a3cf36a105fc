"""One environment of one tenant, complete: namespace, isolation, credentials, database
and server. Tenant stacks on shared clusters and dedicated stacks both build these."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from psycopg.conninfo import conninfo_to_dict

from components import naming
from components.base import Component
from components.catalog import Compute, Tier
from components.cluster import ClusterTarget
from components.endpoints import DatabaseEndpoint
from components.images import validate_pinned_image
from components.network_isolation import NetworkIsolation, NetworkIsolationArgs
from components.tenant_credentials import TenantCredentials, TenantCredentialsArgs
from components.tenant_database import TenantDatabase, TenantDatabaseArgs
from components.tenant_namespace import DATABASE_SECRET, TenantNamespace, TenantNamespaceArgs
from components.tenant_server import DEFAULT_ROLLOUT_TIMEOUT, TenantServer, TenantServerArgs


@dataclass(frozen=True)
class TenantEnvironmentArgs:
    target: ClusterTarget
    slug: str
    tier: Tier
    environment: str
    image: str
    database: DatabaseEndpoint
    # Secrets, from stack config.
    database_admin_url: pulumi.Input[str]
    license: pulumi.Input[str]
    suspended: bool = False
    committed: Compute | None = None
    rollout_timeout: str = DEFAULT_ROLLOUT_TIMEOUT
    # Secret: the database role's password, kept from the stack the tenant moved from.
    database_password: pulumi.Input[str] | None = None
    # The Kubernetes auth mount of the cluster's service accounts; None: the default one.
    secrets_auth_mount: str | None = None
    # Where the server reaches OpenBao and the control plane (its license, its usage reports),
    # as base URLs; None: not told (a stack configured before servers were told).
    secrets_address: str | None = None
    control_plane_url: str | None = None

    def __post_init__(self) -> None:
        naming.namespace_name(self.slug, self.environment)
        self.tier.quota_for(self.environment, self.committed)
        validate_pinned_image(self.image)


class TenantEnvironment(Component):
    namespace: str
    server: str
    database_schema: str

    def __init__(self, name: str, args: TenantEnvironmentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:tenancy:TenantEnvironment", name, opts)
        cluster = args.target.connection
        child = self.child_options()

        namespace = TenantNamespace(f"{name}-namespace", TenantNamespaceArgs(
            cluster=cluster, slug=args.slug, tier=args.tier, environment=args.environment,
            committed=args.committed), child)
        inside = self.child_options(depends_on=[namespace])
        labels = namespace.labels

        NetworkIsolation(f"{name}-network", NetworkIsolationArgs(
            cluster=cluster, namespace=namespace.namespace, database=args.database,
            cluster_cidrs=args.target.internal_cidrs, labels=labels), inside)

        identifier = naming.database_identifier(args.slug, args.environment)
        credentials = TenantCredentials(f"{name}-credentials", TenantCredentialsArgs(
            cluster=cluster, namespace=namespace.namespace, secret_name=DATABASE_SECRET,
            username=identifier, labels=labels, password=args.database_password,
            extra_data={
                "host": args.database.host,
                "port": str(args.database.port),
                "database": pulumi.Output.from_input(args.database_admin_url).apply(_database_name),
                "schema": identifier,
            }), inside)

        database = TenantDatabase(f"{name}-database", TenantDatabaseArgs(
            slug=args.slug, environment=args.environment,
            admin_url=args.database_admin_url, password=credentials.password), child)

        server = TenantServer(f"{name}-server", TenantServerArgs(
            cluster=cluster, namespace=namespace.namespace, image=args.image,
            size=args.tier.profile_for(args.environment).server, license=args.license,
            priority_class=args.tier.priority_class_name, suspended=args.suspended,
            settings=server_settings(args), labels=labels, rollout_timeout=args.rollout_timeout), self.child_options(depends_on=[namespace, credentials, database]))

        self.namespace = namespace.namespace
        self.server = server.deployment_name
        self.database_schema = database.identifier
        self.register_outputs({"namespace": self.namespace, "server": self.server,
                               "databaseSchema": self.database_schema})


def server_settings(args: TenantEnvironmentArgs) -> dict[str, str]:
    """What the server is told about its tenant; the license stays the authority on features."""
    retention = args.tier.limits.retention_days
    settings = {
        "CAMELEER_TENANT": args.slug,
        "CAMELEER_ENVIRONMENT": args.environment,
        "CAMELEER_TIER": args.tier.name,
        "CAMELEER_RETENTION_DAYS": str(retention) if retention is not None else "contract",
        "CAMELEER_SECRETS_ROLE": naming.secrets_role(args.slug),
        "CAMELEER_SECRETS_PATH": f"{naming.SECRETS_MOUNT}/{args.slug}",
        "CAMELEER_SECRETS_TOKEN_FILE": f"{naming.SECRETS_TOKEN_DIR}/token",
    }
    if args.secrets_auth_mount is not None:  # unset, the server uses naming.SECRETS_AUTH_MOUNT
        settings["CAMELEER_SECRETS_AUTH_MOUNT"] = args.secrets_auth_mount
    if args.secrets_address is not None:
        settings["CAMELEER_SECRETS_ADDRESS"] = args.secrets_address
    if args.control_plane_url is not None:
        settings["CAMELEER_CONTROL_PLANE_URL"] = args.control_plane_url
    return settings


def _database_name(admin_url: str) -> str:
    """The database named in the admin URL: tenants live in the same database."""
    try:
        info = conninfo_to_dict(admin_url)
    except Exception:  # noqa: BLE001 - libpq's message quotes the URL, password included
        raise ValueError("cameleer:databaseAdminUrl is not a valid PostgreSQL connection URL") from None
    # libpq's own default: the database named like the user.
    return str(info.get("dbname") or info.get("user") or "postgres")
