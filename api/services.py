"""The long-lived collaborators of the API and the workers, built once per process."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.auth.keyring import KeyRing
from api.auth.signing import TransitSigner, key_policies
from api.billing.stripe_api import StripeBilling
from api.clusters.credentials import ClusterCredentials
from api.db.session import Database
from api.mail import Mailer, mailer_from_settings
from api.operations.fingerprints import RequestFingerprints
from api.server_credential.store import SecretCache
from api.settings import Settings
from api.stacks.driver import StackDriver
from api.tenant_secrets import TenantSecrets
from api.vault import VaultConnection


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_object(path: str) -> Any:
    """Import ``module:attribute`` (settings name implementations this way)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyRing
    tenant_secrets: TenantSecrets
    cluster_credentials: ClusterCredentials
    fingerprints: RequestFingerprints
    billing: StripeBilling
    mailer: Mailer
    _driver: StackDriver | None = field(default=None, repr=False)
    # The time as license answers and the license renewal see it (tests freeze it).
    clock: Callable[[], datetime] = utc_now
    # The tenant servers' credential secrets read from OpenBao lately (api.server_credential.store).
    server_secrets: SecretCache = field(default_factory=SecretCache)

    @property
    def driver(self) -> StackDriver:
        """The stack driver, created on first use (the engine adapter imports lazily)."""
        if self._driver is None:
            self._driver = load_object(self.settings.stack_driver)()
        return self._driver

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        driver: StackDriver | None = None,
        billing: StripeBilling | None = None,
        db: Database | None = None,
        mailer: Mailer | None = None,
    ) -> Services:
        vault = VaultConnection.from_settings(settings)
        return cls(
            settings=settings,
            db=db or Database.from_settings(settings),
            keys=KeyRing(TransitSigner.from_settings(settings, vault), key_policies(settings)),
            tenant_secrets=TenantSecrets.from_settings(settings, vault),
            cluster_credentials=ClusterCredentials(vault),
            fingerprints=RequestFingerprints.from_settings(settings, vault),
            billing=billing or StripeBilling.from_settings(settings),
            mailer=mailer or mailer_from_settings(settings),
            _driver=driver,
        )
