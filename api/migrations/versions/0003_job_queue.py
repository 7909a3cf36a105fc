"""Job queue: procrastinate's schema (pinned procrastinate version) and the app role's access.

Upgrading procrastinate later means adding a revision that applies its shipped
migration files (``procrastinate.schema.SchemaManager.get_migrations_path()``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def upgrade(app_role: str) -> None:
    # Through the driver without parameters, so psycopg leaves the '%' in the SQL alone.
    op.get_bind().connection.driver_connection.execute(SchemaManager.get_schema())
    app = _quote(app_role)
    op.execute(
        f"""
        DO $$
        DECLARE t record;
        BEGIN
            FOR t IN SELECT c.relname, c.relkind FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relname LIKE 'procrastinate%'
                       AND c.relkind IN ('r', 'S')
            LOOP
                IF t.relkind = 'r' THEN
                    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO {app}', t.relname);
                ELSE
                    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %I TO {app}', t.relname);
                END IF;
            END LOOP;
        END
        $$
        """
    )


def downgrade(app_role: str) -> None:
    op.execute(
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT oid::regprocedure AS f FROM pg_proc WHERE proname LIKE 'procrastinate%'
            LOOP EXECUTE 'DROP FUNCTION ' || r.f || ' CASCADE'; END LOOP;
        END
        $$
        """
    )
    for table in ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs", "procrastinate_workers"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    for typ in ("procrastinate_job_event_type", "procrastinate_job_status", "procrastinate_job_to_defer_v1"):
        op.execute(f"DROP TYPE IF EXISTS {typ} CASCADE")
