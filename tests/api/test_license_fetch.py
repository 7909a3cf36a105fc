"""The tenant server's license fetch, the path a fleet polls: one statement and no OpenBao
read per request, and still no answer for a rotated key or another tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

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
    with openbao_reads(services, monkeypatch) as reads:
        first = _signed_get(client, path, credential)
        assert first.status_code == 200, first.text
        for _ in range(4):
            with statements(services) as sent:
                assert _signed_get(client, path, credential).status_code == 200
            assert len(sent) == 1, sent
            with statements(services) as sent:
                conditional = _signed_get(client, path, credential, **{"If-None-Match": first.headers["etag"]})
                assert conditional.status_code == 304
            assert len(sent) == 1, sent
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
