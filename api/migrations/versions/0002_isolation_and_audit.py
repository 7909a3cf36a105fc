"""Privileges of the app role, row-level security, append-only hash-chained audit log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT_TABLES = {
    "tenants": "id",
    "memberships": "tenant_id",
    "licenses": "tenant_id",
    "operations": "tenant_id",
    "stack_events": "tenant_id",
    "audit_log": "tenant_id",
}


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    app = _quote(app_role)
    op.execute(f"GRANT USAGE ON SCHEMA public TO {app}")
    op.execute(f"GRANT SELECT ON alembic_version TO {app}")
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users, memberships, licenses,"
        f" operations, stack_events TO {app}"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON signing_keys TO {app}")
    op.execute(f"GRANT SELECT, INSERT ON audit_log TO {app}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE stack_events_id_seq, audit_log_id_seq TO {app}")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC, {app}")

    # Row-level security: a transaction sees the rows of app.tenant_id, or all of
    # them when app.bypass_rls = 'on' (set per transaction by api.db.session).
    op.execute(
        """
        CREATE FUNCTION app_rls_allows(row_tenant uuid) RETURNS boolean
        LANGUAGE sql STABLE AS $$
            SELECT coalesce(current_setting('app.bypass_rls', true), '') = 'on'
                OR row_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
        $$
        """
    )
    for table, column in TENANT_TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table}"
            f" USING (app_rls_allows({column})) WITH CHECK (app_rls_allows({column}))"
        )

    # Append-only audit log: no UPDATE/DELETE/TRUNCATE, for anyone, by trigger.
    op.execute(
        """
        CREATE FUNCTION audit_log_forbid_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit_log_forbid_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_forbid_change()"
    )
    # The chain head must be read across tenants even from a tenant-scoped transaction.
    op.execute(
        """
        CREATE FUNCTION audit_chain_head() RETURNS text
        LANGUAGE plpgsql AS $$
        DECLARE
            previous text := coalesce(current_setting('app.bypass_rls', true), '');
            head text;
        BEGIN
            PERFORM set_config('app.bypass_rls', 'on', true);
            SELECT hash INTO head FROM audit_log ORDER BY id DESC LIMIT 1;
            PERFORM set_config('app.bypass_rls', previous, true);
            RETURN head;
        END
        $$
        """
    )


def downgrade(app_role: str) -> None:
    op.execute("DROP FUNCTION audit_chain_head()")
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_forbid_change()")
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION app_rls_allows(uuid)")
