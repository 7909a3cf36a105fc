"""Service configuration, read from the environment (prefix ``CAMELEER_``).

Secrets are ``SecretStr`` so that they never show up in a repr or a log line.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from components.naming import SECRETS_AUTH_MOUNT
from stacks.clusters import DEFAULT_LOCAL_CLUSTER


class ServiceNotConfigured(RuntimeError):
    """A setting the service cannot run without is missing: it refuses to start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMELEER_", extra="ignore")

    # The app role's DSN (postgresql+psycopg://...). RLS applies to this role.
    database_url: SecretStr = Field(
        default=SecretStr("postgresql+psycopg://cameleer_app@127.0.0.1:5432/cameleer")
    )
    # The system role's DSN: cross-tenant work (login, signup, platform endpoints, webhooks,
    # the workers' jobs). RLS policies let this role, and no setting of the app role's, see
    # every tenant's rows. Falls back to database_url's server and database as the user
    # cameleer_system (no password).
    database_system_url: SecretStr | None = None
    # The owner role's DSN, used only by migrations. Falls back to database_url.
    database_admin_url: SecretStr | None = None
    # The role the migrations grant privileges to; defaults to the user in database_url.
    database_app_role: str | None = None
    # The role the migrations give cross-tenant access; defaults to the user in database_system_url.
    database_system_role: str | None = None

    # The Vault-API server (OpenBao locally) that signs tokens and licenses and holds the
    # stacks' keys and the tenants' secrets: no default, the service refuses to start without
    # it, and readiness reports it sealed or unreachable. Read from VAULT_* like every client.
    vault_addr: str | None = Field(default=None, validation_alias=AliasChoices("CAMELEER_VAULT_ADDR", "VAULT_ADDR", "BAO_ADDR"))
    vault_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CAMELEER_VAULT_TOKEN", "VAULT_TOKEN", "BAO_TOKEN"))
    transit_mount: str = "transit"
    # Where the Kubernetes auth method that the tenant servers log in with is mounted: this
    # mount serves the platform's own cluster, `<mount>-<cluster>` every other one
    # (components.naming.secrets_auth_mount).
    vault_kubernetes_mount: str = SECRETS_AUTH_MOUNT
    # The platform's own cluster, named by CAMELEER_CLUSTER as for the stack programs.
    platform_cluster: str = Field(default=DEFAULT_LOCAL_CLUSTER, validation_alias=AliasChoices("CAMELEER_CLUSTER"))
    # Access tokens and licenses are signed by these Ed25519 transit keys (created on first
    # use). A key rotates when its latest version is older than the rotation period; a
    # version keeps verifying for the overlap after its successor took over, which is never
    # shorter than the longest lifetime of what it signed.
    access_signing_key: str = "cameleer-access-tokens"
    license_signing_key: str = "cameleer-licenses"
    audit_signing_key: str = "cameleer-audit-checkpoints"
    # HMAC key of the idempotency fingerprints (never rotated: a replay must still match).
    fingerprint_key: str = "cameleer-request-fingerprints"
    access_key_rotation_days: float = Field(default=30, gt=0)
    license_key_rotation_days: float = Field(default=90, gt=0)
    audit_key_rotation_days: float = Field(default=365, gt=0)
    signing_key_extra_overlap_seconds: int = Field(default=300, ge=0)

    issuer: str = "cameleer-control-plane"
    access_token_ttl_seconds: int = 900
    # A refresh token works once, for this long; each use rotates it (api.auth.sessions).
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    # A used refresh token presented again this soon after its use is a repeat (a lost answer
    # retried, two tabs renewing together), answered with the same successor; later, a reuse
    # that ends the session. 0: every second presentation is a reuse.
    refresh_token_reuse_interval_seconds: int = Field(default=10, ge=0, le=60)
    # Mailed links: an invitation to an organisation, a password reset.
    invitation_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    password_reset_ttl_seconds: int = Field(default=3600, gt=0)
    license_ttl_days: int = 30
    license_expiry_grace_days: int = 7
    license_offline_grace_hours: int = 24
    # The hourly renewal re-issues an active tenant's license this long before it expires.
    license_renewal_window_days: int = Field(default=7, gt=0)

    # Login throttling (api.auth.throttle): this many failures within the window lock an
    # account (by email, whether it exists or not) or a client address for the lockout.
    login_account_max_failures: int = Field(default=5, gt=0)
    login_account_window_seconds: int = Field(default=900, gt=0)
    login_account_lockout_seconds: int = Field(default=900, gt=0)
    login_address_max_failures: int = Field(default=20, gt=0)
    login_address_window_seconds: int = Field(default=900, gt=0)
    login_address_lockout_seconds: int = Field(default=900, gt=0)

    # Signup (api.tenants.signup_limits): at most this many signups per client address and per
    # email domain within the window (and organisations created per signed-in user), then 429
    # until the window has passed; at most this many unverified signups at once, in all and per
    # email domain. A verification link expires after the TTL (its pending signup with it).
    signup_verification_ttl_seconds: int = Field(default=86400, gt=0)
    signup_address_max: int = Field(default=5, gt=0)
    signup_address_window_seconds: int = Field(default=3600, gt=0)
    signup_domain_max: int = Field(default=20, gt=0)
    signup_domain_window_seconds: int = Field(default=86400, gt=0)
    signup_user_max: int = Field(default=5, gt=0)
    signup_user_window_seconds: int = Field(default=86400, gt=0)
    signup_pending_max: int = Field(default=1000, gt=0)
    signup_pending_domain_max: int = Field(default=50, gt=0)

    stack_driver: str = "api.stacks.automation_adapter:AutomationStackDriver"

    # Stripe (or stripe-mock, which scripts/services.sh starts on loopback). The key and the
    # webhook signing secret have no default: billing refuses to run without them.
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_webhook_tolerance_seconds: int = 300
    stripe_max_network_retries: int = 2
    # Metering: how often the collector samples what tenants reserve, and when the
    # pipeline counts as silent (alert metric).
    metering_interval_seconds: int = 300
    metering_silent_after_seconds: int = 3600

    job_queue: str = "operations"
    job_max_attempts: int = 6
    job_backoff_base_seconds: int = 2
    worker_concurrency: int = 1
    # A worker that has not sent a heartbeat for this long is dead; its job is retried.
    stalled_after_seconds: float = 30.0
    worker_metrics_port: int | None = None

    readiness_timeout_seconds: float = 300.0
    readiness_poll_seconds: float = 5.0

    # Mail (api.mail): maildir:///path (default: the outbox under data_dir), smtp:// or smtps://.
    mail_url: str | None = None
    mail_sender: str = "Cameleer <no-reply@cameleer.localhost>"
    # Where people reach this service: the links in mail point here.
    public_base_url: str = "http://127.0.0.1:8080"

    # Local state outside the database; the signed audit checkpoints are exported here.
    data_dir: Path = Path(__file__).resolve().parents[1] / ".cameleer"
    # Drift reports kept in the database (api.drift.store): a report is pruned by the next
    # writer once it is not among the newest `keep`, or once it is older than `keep_days` (None:
    # no age limit); the newest always stays.
    drift_reports_keep: int = Field(default=50, ge=1)
    drift_reports_keep_days: float | None = Field(default=30.0, gt=0)

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"

    def app_dsn(self) -> str:
        return self.database_url.get_secret_value()

    def system_dsn(self) -> str:
        if self.database_system_url is not None:
            return self.database_system_url.get_secret_value()
        app = make_url(self.app_dsn())
        return URL.create(app.drivername, username="cameleer_system", host=app.host, port=app.port,
                          database=app.database, query=app.query).render_as_string(hide_password=False)

    def admin_dsn(self) -> str:
        url = self.database_admin_url or self.database_url
        return url.get_secret_value()

    def app_role(self) -> str:
        return self.database_app_role or make_url(self.app_dsn()).username or "cameleer_app"

    def system_role(self) -> str:
        return self.database_system_role or make_url(self.system_dsn()).username or "cameleer_system"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def libpq_dsn(sqlalchemy_url: str) -> str:
    """Turn ``postgresql+psycopg://`` into a plain libpq URL for psycopg/procrastinate."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
