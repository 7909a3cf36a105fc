"""Row-level security at the database level, as the app and system roles, without the app's checks."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from api.db.session import ScopeSigner
from api.settings import libpq_dsn
from tests.api.conftest import sign_up

TENANT_TABLES = {"tenants": "id", "memberships": "tenant_id", "licenses": "tenant_id", "operations": "tenant_id",
                 "stack_events": "tenant_id", "audit_log": "tenant_id"}


@pytest.fixture
def app_conn(database):
    with psycopg.connect(libpq_dsn(database.url(database.app))) as conn:
        yield conn


@pytest.fixture
def system_conn(database):
    with psycopg.connect(libpq_dsn(database.url(database.system))) as conn:
        yield conn


@pytest.fixture
def owner_conn(database):
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        yield conn


@pytest.fixture
def signer(services) -> ScopeSigner:
    return ScopeSigner(services.db.system_engine)


def _scoped(conn, signer: ScopeSigner, tenant_id: str) -> None:
    """What api.db.session does at the start of a tenant-scoped transaction."""
    value = signer.value(uuid.UUID(tenant_id), conn.info.backend_pid)
    conn.execute("SELECT set_config('app.tenant_scope', %s, true)", (value,))


def _visible_tenants(conn) -> set[str]:
    return {str(row[0]) for row in conn.execute("SELECT id FROM tenants").fetchall()}


def _rows_of(conn, tenant_id: str) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (tenant_id,)).fetchone()[0]
            for table, column in TENANT_TABLES.items()}


def test_a_signed_scope_sees_its_tenant_and_nothing_else(client, services, app_conn, signer):
    a, b = sign_up(client, services), sign_up(client, services)
    with app_conn.transaction():
        _scoped(app_conn, signer, a.tenant_id)
        own, other = _rows_of(app_conn, a.tenant_id), _rows_of(app_conn, b.tenant_id)
        assert all(count == 0 for count in other.values()), f"tenant A sees tenant B's rows: {other}"
        assert all(count > 0 for table, count in own.items() if table != "stack_events"), own
        assert _visible_tenants(app_conn) == {a.tenant_id}


def test_the_app_role_reads_no_other_tenant_by_any_setting(client, services, app_conn, signer, database):
    a, b = sign_up(client, services), sign_up(client, services)
    with psycopg.connect(libpq_dsn(database.url(database.app))) as other_backend:
        signed_for_other_backend = signer.value(uuid.UUID(b.tenant_id), other_backend.info.backend_pid)
    a_signature = signer.value(uuid.UUID(a.tenant_id), app_conn.info.backend_pid).partition(".")[2]
    attempts = [
        "SET app.bypass_rls = 'on'",  # the old bypass, session-wide and transaction-local
        "SELECT set_config('app.bypass_rls', 'on', true)",
        f"SET app.tenant_id = '{b.tenant_id}'",  # the old free tenant setting
        f"SET app.tenant_scope = '{b.tenant_id}'",  # unsigned
        f"SET app.tenant_scope = '{b.tenant_id}.{'0' * 64}'",  # forged
        f"SET app.tenant_scope = '{b.tenant_id}.{a_signature}'",  # A's signature on B's id
        f"SET app.tenant_scope = '{signed_for_other_backend}'",  # valid, for another connection only
    ]
    for attempt in attempts:
        with app_conn.transaction():
            app_conn.execute(attempt)
            assert _visible_tenants(app_conn) == set(), attempt
            assert all(count == 0 for count in _rows_of(app_conn, b.tenant_id).values()), attempt
            assert app_conn.execute("SELECT app_current_tenant()").fetchone()[0] is None, attempt
        app_conn.execute("RESET ALL")
        app_conn.commit()


@pytest.mark.parametrize("statement", [
    "SET ROLE {system}",
    "SET SESSION AUTHORIZATION {system}",
    "SET row_security = off",  # errors instead of reading past a policy
    "SELECT key FROM rls_scope_key",
    "ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY",
    "ALTER POLICY tenant_isolation ON tenants USING (true)",
])
def test_the_app_role_cannot_leave_its_policies(client, services, app_conn, database, statement):
    sign_up(client, services)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with app_conn.transaction():
            app_conn.execute(statement.format(system=f'"{database.system_role}"'))
            app_conn.execute("SELECT id FROM tenants").fetchall()


def test_the_system_role_sees_every_tenant_and_no_scope_sees_nothing(client, services, app_conn, system_conn):
    a, b = sign_up(client, services), sign_up(client, services)
    with app_conn.transaction():
        assert _visible_tenants(app_conn) == set()
    with system_conn.transaction():
        assert {a.tenant_id, b.tenant_id} <= _visible_tenants(system_conn)
        assert all(count > 0 for table, count in _rows_of(system_conn, b.tenant_id).items() if table != "stack_events")


def test_writing_into_another_tenant_is_rejected(client, services, app_conn, signer):
    a, b = sign_up(client, services), sign_up(client, services)
    with app_conn.transaction():
        _scoped(app_conn, signer, a.tenant_id)
        updated = app_conn.execute("UPDATE tenants SET name = 'pwned' WHERE id = %s RETURNING id", (b.tenant_id,))
        assert updated.fetchall() == []  # B's row is invisible, so nothing is updated
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        with app_conn.transaction():
            _scoped(app_conn, signer, a.tenant_id)
            app_conn.execute(
                "INSERT INTO memberships (id, user_id, tenant_id, role) SELECT gen_random_uuid(), user_id, %s, 'owner'"
                " FROM memberships WHERE tenant_id = %s",
                (b.tenant_id, a.tenant_id),
            )


@pytest.mark.parametrize("role", ["app", "system"])
def test_neither_role_can_update_or_delete_audit_log(client, services, database, signer, role):
    tenant = sign_up(client, services)
    with psycopg.connect(libpq_dsn(database.url(getattr(database, role)))) as conn:
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                with conn.transaction():
                    if role == "app":
                        _scoped(conn, signer, tenant.tenant_id)
                    conn.execute(statement)


def test_even_the_owner_cannot_update_audit_log(client, services, owner_conn):
    sign_up(client, services)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            with owner_conn.transaction():
                owner_conn.execute("ALTER TABLE audit_log NO FORCE ROW LEVEL SECURITY")  # the owner may
                owner_conn.execute(statement)


def test_service_notices_a_role_that_bypasses_rls(services, database):
    from sqlalchemy import create_engine

    from api.db.schema_state import rls_bypassed_by_role

    assert rls_bypassed_by_role(services.db.engine) is None  # the app role is subject to RLS
    assert rls_bypassed_by_role(services.db.system_engine) is None  # so is the system role (policies)
    admin = create_engine(database.url(database.admin))
    try:
        assert rls_bypassed_by_role(admin) == database.admin.username  # a superuser is not
    finally:
        admin.dispose()
