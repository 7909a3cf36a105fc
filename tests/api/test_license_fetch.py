"""The tenant server's license fetch, the path a fleet polls: one statement on the async pool,
none through SQLAlchemy, no OpenBao read per request, and still no answer for a rotated key or
another tenant."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import event

from api.app import create_app
from api.db.async_reads import APPLICATION_NAME
from api.services import Services
from api.settings import libpq_dsn

from tests.api.conftest import sign_up
from tests.api.test_license_renewal import _credential, _signed_get


@contextmanager
def statements(services) -> Iterator[list[str]]:
    """The SQL statements both engines send meanwhile (a pool's pre-ping is not one)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    engines = (services.db.engine, services.db.system_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


@contextmanager
def async_reads(services, monkeypatch) -> Iterator[list[str]]:
    """The statements read through the event loop's pool (api.db.async_reads)."""
    reads: list[str] = []
    pool = services.db.async_system_reads
    original = pool.first

    async def counted(read, **params):
        reads.append(read.sql)
        return await original(read, **params)

    monkeypatch.setattr(pool, "first", counted)
    yield reads


@contextmanager
def openbao_reads(services, monkeypatch) -> Iterator[list[tuple[str, str]]]:
    reads: list[tuple[str, str]] = []
    original = services.tenant_secrets.read

    def counted(slug: str, name: str):
        reads.append((slug, name))
        return original(slug, name)

    monkeypatch.setattr(services.tenant_secrets, "read", counted)
    yield reads


def test_a_fetch_is_one_statement_and_the_secret_is_read_once(client, services, monkeypatch):
    tenant = sign_up(client, services)
    credential, path = _credential(tenant.slug), f"/api/license/{tenant.tenant_id}"
    with openbao_reads(services, monkeypatch) as reads, async_reads(services, monkeypatch) as pooled:
        first = _signed_get(client, path, credential)
        assert first.status_code == 200, first.text
        for _ in range(4):
            with statements(services) as sent:
                assert _signed_get(client, path, credential).status_code == 200
                conditional = _signed_get(client, path, credential, **{"If-None-Match": first.headers["etag"]})
                assert conditional.status_code == 304
            assert sent == []
    assert len(pooled) == 1 + 4 * 2 and all("usage_credentials" in sql for sql in pooled)
    assert reads == [(tenant.slug, "usage-credential")]


def test_a_cached_secret_does_not_outlive_its_rotation(client, services):
    tenant, other = sign_up(client, services), sign_up(client, services)
    old, own = _credential(tenant.slug), f"/api/license/{tenant.tenant_id}"
    assert _signed_get(client, own, old).status_code == 200  # its secret is cached now
    assert _signed_get(client, f"/api/license/{other.tenant_id}", old).status_code == 404
    assert client.post(f"/v1/tenants/{tenant.tenant_id}/server-credential", headers=tenant.headers).status_code == 201
    refused = _signed_get(client, own, old)
    assert refused.status_code == 401 and refused.json()["type"] == "/problems/server-credential-unauthorized"
    assert _signed_get(client, own, _credential(tenant.slug)).status_code == 200
    assert _signed_get(client, own, {**old, "secret": "not-the-secret"}).status_code == 401


def test_a_members_fetch_reads_the_legacy_keys_once_per_cache_period(client, services):
    tenant = sign_up(client, services)
    path = f"/api/license/{tenant.tenant_id}"
    assert client.get(path, headers=tenant.headers).status_code == 200
    with statements(services) as sent:
        assert client.get(path, headers=tenant.headers).status_code == 200
    assert not [s for s in sent if "signing_keys" in s], sent


def test_the_server_and_a_member_get_the_same_license(client, services):
    """The servers' route (api.licensing.server_route) and the members' route answer alike."""
    tenant = sign_up(client, services)
    path = f"/api/license/{tenant.tenant_id}"
    by_server, by_member = _signed_get(client, path, _credential(tenant.slug)), client.get(path, headers=tenant.headers)
    assert by_server.status_code == by_member.status_code == 200
    for header in ("etag", "cache-control", "content-type"):
        assert by_server.headers[header] == by_member.headers[header]
    answer_time = {"checked_at", "offline_grace_until"}
    assert {k: v for k, v in by_server.json().items() if k not in answer_time} == \
        {k: v for k, v in by_member.json().items() if k not in answer_time}
    assert set(by_server.json()) == set(by_member.json())


def test_a_fetch_survives_the_database_ending_the_pools_connections(client, services, database):
    tenant = sign_up(client, services)
    credential, path = _credential(tenant.slug), f"/api/license/{tenant.tenant_id}"
    assert _signed_get(client, path, credential).status_code == 200
    ended = subprocess.run(
        ["psql", libpq_dsn(database.url(database.system)), "-AtXqc",
         "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
         f"WHERE application_name = '{APPLICATION_NAME}' AND datname = current_database()"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert int(ended) >= 1
    assert _signed_get(client, path, credential).status_code == 200


def test_the_servers_fetch_is_counted_under_its_route(client, services):
    tenant = sign_up(client, services)
    path = f"/api/license/{tenant.tenant_id}"
    assert _signed_get(client, path, _credential(tenant.slug)).status_code == 200
    assert 'route="/api/license/{tenant_id}",status="200"' in client.get("/metrics").text


def test_without_the_lifespan_the_servers_fetch_reads_in_a_thread(client, services):
    """The pool opens with the app's lifespan, in the server's event loop (uvicorn always runs
    it). A client that skips the lifespan calls the app from other loops: the same answer."""
    tenant = sign_up(client, services)
    credential, path = _credential(tenant.slug), f"/api/license/{tenant.tenant_id}"
    no_lifespan = TestClient(create_app(services.settings, services=services))
    assert _signed_get(no_lifespan, path, credential).json()["token"] == _signed_get(client, path, credential).json()["token"]
