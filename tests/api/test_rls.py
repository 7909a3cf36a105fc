"""Row-level security at the database level, as the app role, without the app's checks."""

from __future__ import annotations

import psycopg
import pytest

from api.settings import libpq_dsn
from tests.api.conftest import sign_up

TENANT_TABLES = {"tenants": "id", "memberships": "tenant_id", "licenses": "tenant_id", "operations": "tenant_id",
                 "stack_events": "tenant_id", "audit_log": "tenant_id"}


@pytest.fixture
def app_conn(database):
    with psycopg.connect(libpq_dsn(database.url(database.app))) as conn:
        yield conn


@pytest.fixture
def owner_conn(database):
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        yield conn


def _scoped(conn, tenant_id: str = "", bypass: str = "off"):
    conn.execute("SELECT set_config('app.tenant_id', %s, true), set_config('app.bypass_rls', %s, true)", (tenant_id, bypass))


def test_cross_tenant_select_returns_nothing(client, services, app_conn):
    a, b = sign_up(client, services), sign_up(client, services)
    with app_conn.transaction():
        _scoped(app_conn, a.tenant_id)
        for table, column in TENANT_TABLES.items():
            own = app_conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (a.tenant_id,)).fetchone()[0]
            other = app_conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (b.tenant_id,)).fetchone()[0]
            assert other == 0, f"{table}: tenant A sees tenant B's rows"
            assert own > 0 or table == "stack_events" and own == 0
        assert app_conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 1


def test_no_scope_sees_nothing_and_bypass_sees_all(client, services, app_conn):
    a, b = sign_up(client, services), sign_up(client, services)
    with app_conn.transaction():
        _scoped(app_conn)
        assert app_conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0
    with app_conn.transaction():
        _scoped(app_conn, bypass="on")
        ids = {str(r[0]) for r in app_conn.execute("SELECT id FROM tenants").fetchall()}
        assert {a.tenant_id, b.tenant_id} <= ids


def test_writing_into_another_tenant_is_rejected(client, services, app_conn):
    a, b = sign_up(client, services), sign_up(client, services)
    with app_conn.transaction():
        _scoped(app_conn, a.tenant_id)
        updated = app_conn.execute("UPDATE tenants SET name = 'pwned' WHERE id = %s RETURNING id", (b.tenant_id,))
        assert updated.fetchall() == []  # B's row is invisible, so nothing is updated
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        with app_conn.transaction():
            _scoped(app_conn, a.tenant_id)
            app_conn.execute(
                "INSERT INTO memberships (id, user_id, tenant_id, role) SELECT gen_random_uuid(), user_id, %s, 'owner'"
                " FROM memberships WHERE tenant_id = %s",
                (b.tenant_id, a.tenant_id),
            )


def test_app_role_cannot_update_or_delete_audit_log(client, services, app_conn):
    sign_up(client, services)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            with app_conn.transaction():
                _scoped(app_conn, bypass="on")
                app_conn.execute(statement)


def test_even_the_owner_cannot_update_audit_log(client, services, owner_conn):
    sign_up(client, services)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            with owner_conn.transaction():
                _scoped(owner_conn, bypass="on")
                owner_conn.execute(statement)


def test_service_notices_a_role_that_bypasses_rls(services, database):
    from sqlalchemy import create_engine

    from api.db.schema_state import rls_bypassed_by_role

    assert rls_bypassed_by_role(services.db.engine) is None  # the app role is subject to RLS
    admin = create_engine(database.url(database.admin))
    try:
        assert rls_bypassed_by_role(admin) == database.admin.username  # a superuser is not
    finally:
        admin.dispose()
