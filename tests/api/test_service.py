"""Service quality: probes, metrics, OpenAPI, problem details, request ids, logs, and
the refusal to start on an unmigrated database."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.app import main as app_main
from api.db.schema_state import DatabaseNotMigrated
from api.logs import ContextFilter, configure_logging, redact
from api.db.schema_state import head_revisions
from api.migrate import downgrade, upgrade
from api.services import Services
from api.settings import Settings
from api.vault import VaultNotConfigured
from tests.api.database import create_database, drop_database
from tests.api.fakes import FakeStackDriver

PROBLEM = "application/problem+json"


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    heads = head_revisions()
    assert len(heads) == 1, f"the migrations have forked: {heads}"
    assert ready.status_code == 200 and ready.json()["schema"] == sorted(heads)


def test_readiness_reports_the_secrets_server(client, services, monkeypatch):
    assert services.settings.vault_addr, "VAULT_ADDR is not set: scripts/services.sh starts OpenBao"
    assert client.get("/readyz").json()["secrets"] == "unsealed"
    monkeypatch.setattr(services.settings, "vault_addr", "http://127.0.0.1:9")
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json()["detail"] == "the secrets server is unreachable"


def test_metrics_count_requests(client):
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'cameleer_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "cameleer_provisioning_duration_seconds" in text


def test_openapi_lists_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/signup", "/v1/auth/login", "/api/license/{tenant_id}", "/v1/operations/{operation_id}"} <= set(paths)


@pytest.mark.parametrize(
    ("method", "path", "status", "problem_type"),
    [
        ("GET", "/no/such/route", 404, "/problems/not-found"),
        ("GET", "/v1/tenants/not-a-uuid", 401, "/problems/unauthorized"),
        ("POST", "/v1/auth/login", 422, "/problems/validation-error"),
        ("GET", "/v1/tenants/00000000-0000-0000-0000-000000000000", 401, "/problems/unauthorized"),
    ],
)
def test_problem_details_shape(client, method, path, status, problem_type):
    response = client.request(method, path, json={})
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == problem_type and body["status"] == status and body["title"] and body["instance"] == path


def test_validation_problem_lists_the_fields(client):
    body = client.post("/v1/auth/login", json={"email": "not-an-email"}).json()
    locations = {tuple(e["location"]) for e in body["errors"]}
    assert ("body", "email") in locations and ("body", "password") in locations


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_json_logs_carry_request_id_and_no_secrets():
    stream = io.StringIO()
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    logging.getLogger("test").info("connecting with password=hunter2 to postgresql+psycopg://app:s3cret@db/x")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert "request_id" in line and line["level"] == "INFO"
    assert "hunter2" not in line["message"] and "s3cret" not in line["message"]
    assert redact("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----") == "-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----"
    assert isinstance(handler.filters[0], ContextFilter)


def test_settings_never_show_secrets(settings):
    assert settings.vault_token.get_secret_value() not in repr(settings)
    assert settings.app_dsn() not in repr(settings)


def test_refuses_to_start_without_a_signing_backend(monkeypatch):
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN", "CAMELEER_VAULT_ADDR", "CAMELEER_VAULT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(VaultNotConfigured, match="no signing backend"):
        create_app(Settings(database_url="postgresql+psycopg://unused@127.0.0.1:1/unused"))
    env = dict(os.environ)
    for module in ("api", "api.worker"):
        started = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
        assert started.returncode != 0 and "no signing backend" in started.stderr, (module, started.stderr)


@pytest.fixture(scope="module")
def empty_database():
    db = create_database("cameleer_unmigrated")
    yield db
    drop_database(db)


def test_refuses_to_start_on_an_unmigrated_database(empty_database):
    settings = Settings(database_url=SecretStr(empty_database.url(empty_database.owner)))
    app = create_app(settings, services=Services.build(settings, driver=FakeStackDriver()))
    with pytest.raises(DatabaseNotMigrated, match=r"python -m api\.migrate upgrade") as error:
        with TestClient(app):
            pass
    assert "revision is none" in str(error.value)


def test_migrations_go_down_and_up_again(empty_database):
    url, role, system = empty_database.url(empty_database.owner), empty_database.app_role, empty_database.system_role
    upgrade(url=url, app_role=role, system_role=system)
    downgrade(url=url, app_role=role, system_role=system, revision="base")
    settings = Settings(database_url=SecretStr(url))
    with pytest.raises(DatabaseNotMigrated):
        with TestClient(create_app(settings, services=Services.build(settings, driver=FakeStackDriver()))):
            pass
    upgrade(url=url, app_role=role, system_role=system)
    with TestClient(create_app(settings, services=Services.build(settings, driver=FakeStackDriver()))) as client:
        assert client.get("/readyz").status_code == 200


def test_the_served_app_is_kept_out_of_the_collectors_full_passes(settings, monkeypatch):
    served = []
    monkeypatch.setattr("api.app.get_settings", lambda: settings)
    monkeypatch.setattr("api.app.configure_logging", lambda level: None)
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.append((app, gc.get_freeze_count())))
    try:
        app_main()
    finally:
        gc.unfreeze()
    ((_, frozen),) = served
    assert frozen > 10_000
