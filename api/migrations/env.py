"""Alembic environment: runs as the owner role and grants to the app and system roles.

The DSN is ``config.attributes['url']`` when set programmatically (tests, api.migrate),
otherwise the owner DSN from settings. The app role is ``-x app_role=...``,
``config.attributes['app_role']`` or settings; the system role likewise (``system_role``).
Revisions receive ``app_role``; the few that need the system role read
``context.config.attributes['system_role']``, which this module fills in, so the
signature every revision has stays ``upgrade(app_role)``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from api.db.models import Base
from api.settings import Settings

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    return config.attributes.get("settings") or Settings()


def database_url() -> str:
    return config.attributes.get("url") or _settings().admin_dsn()


def app_role() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("app_role")
        or config.attributes.get("app_role")
        or _settings().app_role()
    )


def system_role() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("system_role")
        or config.attributes.get("system_role")
        or _settings().system_role()
    )


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations(app_role=app_role())


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations(app_role=app_role())
    engine.dispose()


config.attributes["system_role"] = system_role()
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
