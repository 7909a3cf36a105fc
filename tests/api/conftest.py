"""Fixtures of the control-plane tests: a real PostgreSQL database per test session,
migrated with the project's migrations, and the app wired to it."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from api.app import create_app
from api.auth.roles import PlatformRole
from api.auth.users import create_user
from api.db.session import Scope
from api.jobs.app import build_job_app
from api.mail import read_maildir
from api.migrate import upgrade
from api.services import Services
from api.settings import Settings, libpq_dsn
from api.billing.stripe_api import StripeBilling
from api.billing.sync import sync_catalog
from api.db.models import Cluster, Tenant
from components.catalog import get_tier
from tests.api import stripe_support, vault_support
from tests.api.database import TestDatabase, create_database, drop_database
from tests.api.fakes import FakeStackDriver

STRONG_PASSWORD = "correct-horse-battery-staple-42"


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
    db = create_database()
    try:
        upgrade(url=db.url(db.owner), app_role=db.app_role, system_role=db.system_role)
        yield db
    finally:
        drop_database(db)


# The auth mounts this session enabled for its clusters (add_cluster), disabled at its end.
_ENABLED_AUTH_MOUNTS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def remove_tenant_secrets(database: TestDatabase) -> Iterator[None]:
    """The tests' tenants leave no KV paths, roles, policies or auth mounts in the local OpenBao."""
    yield
    # The system role: under forced row-level security the owner sees no tenant's rows.
    with psycopg.connect(libpq_dsn(database.url(database.system))) as connection:
        slugs = [row[0] for row in connection.execute("SELECT slug FROM tenants")]
    vault_support.remove_tenant_secrets(slugs)
    vault_support.disable_auth_mounts(_ENABLED_AUTH_MOUNTS)


@pytest.fixture(scope="session")
def signing_keys() -> Iterator[dict[str, str]]:
    """This session's own transit signing keys (on the local OpenBao), destroyed afterwards."""
    names = {"access_signing_key": f"test-{secrets.token_hex(4)}-access",
             "license_signing_key": f"test-{secrets.token_hex(4)}-license",
             "audit_signing_key": f"test-{secrets.token_hex(4)}-audit"}
    yield names
    vault_support.destroy_transit_keys(names.values())


@pytest.fixture(scope="session")
def settings(database: TestDatabase, signing_keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        **signing_keys,
        data_dir=tmp_path_factory.mktemp("data"),  # the session's audit checkpoints
        database_url=SecretStr(database.url(database.app)),
        database_admin_url=SecretStr(database.url(database.owner)),
        database_app_role=database.app_role,
        database_system_url=SecretStr(database.url(database.system)),
        database_system_role=database.system_role,
        job_queue=f"test-{secrets.token_hex(3)}",
        job_max_attempts=2,
        job_backoff_base_seconds=0,
        readiness_timeout_seconds=0,
        readiness_poll_seconds=0,
        # Every test signs up from the TestClient's one address: the signup limits' own tests
        # set theirs low (tests/api/test_signup_limits.py).
        signup_address_max=1_000_000,
        signup_user_max=1_000_000,
        signup_pending_max=1_000_000,
    )


@pytest.fixture(scope="session")
def billing_catalog(settings: Settings) -> None:
    """The Stripe catalog synced (against stripe-mock) into the session's database."""
    built = Services.build(settings)
    try:
        with built.db.transaction(Scope.system()) as session:
            sync_catalog(session, built.billing)
    finally:
        built.db.dispose()


@pytest.fixture(scope="session", autouse=True)
def shared_cluster(database: TestDatabase, settings: Settings) -> str:
    """The session's one shared cluster, `eu1`, big enough for every test's tenants."""
    services = Services.build(settings, driver=FakeStackDriver())
    try:
        return add_cluster(services, "eu1", kind="shared", cpu_m=10_000_000, memory_mi=40_000_000, slots=100_000)
    finally:
        services.db.dispose()


@pytest.fixture
def dedicated_cluster(services: Services) -> Iterator[str]:
    """A fresh dedicated cluster for this test's high or business tenant; cordoned afterwards,
    so that a later test's tenant is never placed on one an earlier test freed."""
    name = add_cluster(services, f"dc-{secrets.token_hex(4)}", kind="dedicated")
    yield name
    with services.db.transaction(Scope.system()) as session:
        session.execute(update(Cluster).where(Cluster.name == name).values(state="cordoned"))


def add_cluster(services: Services, name: str, *, kind: str, cpu_m: int = 64_000, memory_mi: int = 262_144,
                slots: int = 1, state: str = "active") -> str:
    """A registry row of a cluster that no engine reaches (the tests here drive a fake one),
    and its Kubernetes auth mount in OpenBao, where its tenants get their roles (the local
    clusters' mounts exist already; any other is enabled for the session)."""
    with services.db.transaction(Scope.system()) as session:
        session.add(Cluster(name=name, kind=kind, region="test", capacity_cpu_m=cpu_m, capacity_memory_mi=memory_mi,
                            tenant_slots=slots, state=state, credentials_ref=f"platform/clusters/{name}",
                            baseline_stack=f"shared-{name}" if kind == "shared" else None))
    mount = services.tenant_secrets.auth_mount(name)
    if vault_support.ensure_auth_mount(mount):
        _ENABLED_AUTH_MOUNTS.append(mount)
    return name


@pytest.fixture
def driver() -> FakeStackDriver:
    return FakeStackDriver()


@pytest.fixture
def stripe_requests() -> stripe_support.RecordingHTTPClient:
    """Every request this test's services send to Stripe (stripe-mock)."""
    return stripe_support.RecordingHTTPClient()


@pytest.fixture
def services(
    settings: Settings, driver: FakeStackDriver, billing_catalog: None, stripe_requests: stripe_support.RecordingHTTPClient
) -> Iterator[Services]:
    # A job queue of the test's own: a job another test left queued (a signup it never ran)
    # is never run by this test's worker with this test's driver.
    own = settings.model_copy(update={"job_queue": f"{settings.job_queue}-{secrets.token_hex(3)}"})
    billing = StripeBilling.from_settings(own, http_client=stripe_requests)
    built = Services.build(own, driver=driver, billing=billing)
    yield built
    built.db.dispose()


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, services=services)) as test_client:
        yield test_client


@pytest.fixture
def app_clients() -> Iterator[Callable[[Settings, Services, str], TestClient]]:
    """Clients of app instances, each from the client address it is given (the throttles
    count per address); all closed after the test."""
    clients: list[TestClient] = []

    def make(settings: Settings, services: Services, address: str) -> TestClient:
        client = TestClient(create_app(settings, services=services), client=(address, 50000))
        clients.append(client)
        return client.__enter__()

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def new_address() -> str:
    """A client address no other test uses (documentation range)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def run_queue(services: Services) -> None:
    """Run a real procrastinate worker until the queue is empty (no periodic jobs: a test
    calls the periodic work itself, at the time it chooses)."""
    app = build_job_app(services.settings, periodic=False)

    async def work() -> None:
        async with app.open_async():
            await app.run_worker_async(
                queues=[services.settings.job_queue],
                wait=False,
                install_signal_handlers=False,
                listen_notify=False,
                additional_context={"services": services},
            )

    asyncio.run(work())


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def signup_body(slug: str | None = None, tier: str = "low", **overrides) -> dict:
    slug = slug or unique_slug()
    body = {
        "organization_name": f"Org {slug}",
        "slug": slug,
        "owner_email": f"owner@{slug}.example.com",
        "owner_password": STRONG_PASSWORD,
        "tier": tier,
    }
    body.update(overrides)
    return body


def login(client: TestClient, email: str, password: str = STRONG_PASSWORD) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@dataclass
class SignedUp:
    tenant_id: str
    operation_id: str
    slug: str
    email: str
    headers: dict[str, str]


def mails_to(settings: Settings, email: str) -> list[str]:
    """The bodies of the mails sent to ``email`` (the session's local outbox), oldest first."""
    return [m.get_payload(decode=True).decode() for m in read_maildir(settings.data_dir / "outbox")
            if m["To"] == email]


def verification_token(settings: Settings, email: str) -> str:
    """The token of the latest verification link mailed to ``email``."""
    for body in reversed(mails_to(settings, email)):
        found = re.search(r"#token=([A-Za-z0-9_-]+)", body)
        if found:
            return found.group(1)
    raise AssertionError(f"no verification link was mailed to {email}")


def verify(client: TestClient, token: str):
    return client.post("/v1/signup/verify", json={"token": token})


def signup_and_verify(client: TestClient, services: Services, body: dict, key: str | None = None) -> dict:
    """Sign up, follow the mailed link: the tenant and its signup operation, as verification answers them."""
    response = client.post("/v1/signup", json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})
    assert response.status_code == 202, response.text
    verified = verify(client, verification_token(services.settings, body["owner_email"]))
    assert verified.status_code == 202, verified.text
    return verified.json()


def sign_up(client: TestClient, services: Services, *, tier: str = "low", activate: bool = True) -> SignedUp:
    body = signup_body(tier=tier)
    data = signup_and_verify(client, services, body)
    if activate:
        run_queue(services)
        if get_tier(tier).billing.terms.trial_days == 0:
            pay_first_invoice(client, services, uuid.UUID(data["tenant"]["id"]))
    return SignedUp(
        tenant_id=data["tenant"]["id"],
        operation_id=data["operation"]["id"],
        slug=body["slug"],
        email=body["owner_email"],
        headers=login(client, body["owner_email"]),
    )


def send_event(client: TestClient, services: Services, event_type: str, obj: dict, **kwargs):
    payload = stripe_support.event(event_type, obj, **kwargs)
    secret = services.settings.stripe_webhook_secret.get_secret_value()
    return client.post("/v1/billing/webhook", content=payload, headers=stripe_support.signed(payload, secret))


def customer_of(services: Services, tenant_id: uuid.UUID) -> str:
    with services.db.transaction(Scope.system()) as session:
        return session.get(Tenant, tenant_id).billing_customer_id


def pay_first_invoice(client: TestClient, services: Services, tenant_id: uuid.UUID) -> None:
    """What Stripe sends when the payment page succeeds; then the resumed signup runs."""
    obj = {"object": "invoice", "id": f"in_{uuid.uuid4().hex[:14]}", "customer": customer_of(services, tenant_id),
           "status": "paid"}
    response = send_event(client, services, "invoice.paid", obj)
    assert response.status_code == 200, response.text
    run_queue(services)


def platform_user(client: TestClient, services: Services, role: PlatformRole) -> dict[str, str]:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@platform.example.com"
    with services.db.transaction(Scope.system()) as session:
        create_user(session, email, STRONG_PASSWORD, platform_role=role)
    return login(client, email)


@pytest.fixture
def operator_headers(client: TestClient, services: Services) -> dict[str, str]:
    return platform_user(client, services, PlatformRole.OPERATOR)


@pytest.fixture
def auditor_headers(client: TestClient, services: Services) -> dict[str, str]:
    return platform_user(client, services, PlatformRole.AUDITOR)
