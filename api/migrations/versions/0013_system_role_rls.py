"""Row-level security without a bypass setting: a system role for cross-tenant work, and a
tenant scope the app role cannot forge.

Before, the policies let any transaction see every row once it set ``app.bypass_rls`` to
'on', a setting the app role could set for itself. Now:

* the system role (``context.config.attributes['system_role']``, see env.py; it must exist)
  gets the app role's privileges and a permissive ``system_scope`` policy on every table
  under RLS: it sees and writes every row. Login, signup, platform endpoints, webhooks and
  the workers' jobs connect as this role (api.db.session).
* the app role's ``tenant_isolation`` policies compare the row's tenant with
  ``app_current_tenant()``, which reads ``app.tenant_scope`` = ``<tenant>.<hex HMAC-SHA256>``
  and returns the tenant only if the HMAC of ``<tenant>.<backend pid>`` under the key in
  ``rls_scope_key`` verifies, else NULL (no row). The key is readable by the owner and the
  system role only; the function is SECURITY DEFINER so the policies can check it. A setting
  the app role writes itself shows it no row, another backend's scope neither.
* ``app.bypass_rls`` means nothing any more; ``app_rls_allows()`` stays (revisions before
  this one name it) but no longer looks at it. ``audit_chain_head()`` reads the chain head
  as the owner (SECURITY DEFINER, with a read-only policy for the owner on audit_log).

A later revision that puts a table under RLS gives it both policies, like this one does.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import re

from alembic import context, op
from sqlalchemy import text

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_POLICY_COLUMN = re.compile(r"^\(?app_rls_allows\((\w+)\)\)?$")
_TENANT = "(SELECT app_current_tenant())"  # a sub-select: evaluated once per statement


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _tenant_policies() -> list[tuple[str, str]]:
    """(table, tenant column) of every tenant_isolation policy, whichever revision made it."""
    rows = op.get_bind().execute(text(
        "SELECT tablename, qual FROM pg_policies WHERE schemaname = 'public' AND policyname = 'tenant_isolation'"
        " ORDER BY tablename"
    ))
    found = []
    for table, qual in rows:
        match = _POLICY_COLUMN.match(qual)
        if not match:
            raise RuntimeError(f"{table}: tenant_isolation policy {qual!r} is not app_rls_allows(<column>)")
        found.append((table, match[1]))
    return found


def _grant_like_app(app_role: str, system: str) -> None:
    """Every privilege the app role has on the public schema's tables and sequences."""
    rows = op.get_bind().execute(text(
        "SELECT c.relname, c.relkind, a.privilege_type FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')"
        " AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = :app) ORDER BY 1, 3"
    ), {"app": app_role})
    for table, kind, privilege in rows:
        target = "SEQUENCE" if kind == "S" else "TABLE"
        op.execute(f'GRANT {privilege} ON {target} "{table}" TO {system}')


def upgrade(app_role: str) -> None:
    system_role = context.config.attributes["system_role"]
    if system_role == app_role:
        raise RuntimeError("the system role must not be the app role")
    system = _quote(system_role)
    op.execute(f"GRANT USAGE ON SCHEMA public TO {system}")
    _grant_like_app(app_role, system)

    op.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public")  # hmac(), gen_random_bytes()
    op.execute("CREATE TABLE rls_scope_key (id integer PRIMARY KEY CHECK (id = 1),"
               " key bytea NOT NULL DEFAULT gen_random_bytes(32))")
    op.execute("INSERT INTO rls_scope_key (id) VALUES (1)")
    op.execute("REVOKE ALL ON rls_scope_key FROM PUBLIC")
    op.execute(f"GRANT SELECT ON rls_scope_key TO {system}")
    op.execute(
        """
        CREATE FUNCTION app_current_tenant() RETURNS uuid
        LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            scope text := coalesce(current_setting('app.tenant_scope', true), '');
            tenant text := split_part(scope, '.', 1);
            expected bytea;
        BEGIN
            IF tenant = '' THEN
                RETURN NULL;
            END IF;
            SELECT hmac(convert_to(tenant || '.' || pg_backend_pid(), 'UTF8'), key, 'sha256')
              INTO expected FROM rls_scope_key;
            IF encode(expected, 'hex') = split_part(scope, '.', 2) THEN
                RETURN tenant::uuid;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION app_current_tenant() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION app_current_tenant() TO {_quote(app_role)}, {system}")
    op.execute("CREATE OR REPLACE FUNCTION app_rls_allows(row_tenant uuid) RETURNS boolean"
               " LANGUAGE sql STABLE AS $$ SELECT row_tenant = app_current_tenant() $$")

    for table, column in _tenant_policies():
        op.execute(f"ALTER POLICY tenant_isolation ON {table}"
                   f" USING ({column} = {_TENANT}) WITH CHECK ({column} = {_TENANT})")
        op.execute(f"CREATE POLICY system_scope ON {table} TO {system} USING (true) WITH CHECK (true)")

    op.execute("CREATE POLICY chain_head ON audit_log FOR SELECT TO CURRENT_USER USING (true)")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_chain_head() RETURNS text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1
        $$
        """
    )


def downgrade(app_role: str) -> None:
    system = _quote(context.config.attributes["system_role"])
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_chain_head() RETURNS text
        LANGUAGE plpgsql SECURITY INVOKER AS $$
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
    op.execute("DROP POLICY chain_head ON audit_log")
    tables = [table for (table,) in op.get_bind().execute(text(
        "SELECT tablename FROM pg_policies WHERE schemaname = 'public' AND policyname = 'system_scope'"))]
    for table in tables:
        op.execute(f"DROP POLICY system_scope ON {table}")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION app_rls_allows(row_tenant uuid) RETURNS boolean
        LANGUAGE sql STABLE AS $$
            SELECT coalesce(current_setting('app.bypass_rls', true), '') = 'on'
                OR row_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
        $$
        """
    )
    for table, column in _isolated_columns():
        op.execute(f"ALTER POLICY tenant_isolation ON {table}"
                   f" USING (app_rls_allows({column})) WITH CHECK (app_rls_allows({column}))")
    op.execute("DROP FUNCTION app_current_tenant()")
    op.execute("DROP TABLE rls_scope_key")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {system}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {system}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {system}")


def _isolated_columns() -> list[tuple[str, str]]:
    """(table, tenant column) of every tenant_isolation policy as this revision wrote it."""
    rows = op.get_bind().execute(text(
        "SELECT tablename, qual FROM pg_policies WHERE schemaname = 'public' AND policyname = 'tenant_isolation'"
    ))
    return [(table, re.match(r"^\(?(\w+) = ", qual)[1]) for table, qual in rows]
