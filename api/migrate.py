"""Database migrations: ``python -m api.migrate upgrade|current|check|downgrade``.

Runs as the owner role (CAMELEER_DATABASE_ADMIN_URL, else CAMELEER_DATABASE_URL) and
grants to the app role (CAMELEER_DATABASE_APP_ROLE, else the user of CAMELEER_DATABASE_URL)
and to the system role (CAMELEER_DATABASE_SYSTEM_ROLE, else the user of
CAMELEER_DATABASE_SYSTEM_URL), which must exist.
"""

from __future__ import annotations

import sys

import typer
from alembic import command
from sqlalchemy import create_engine

from api.db.schema_state import alembic_config, schema_state
from api.settings import Settings

cli = typer.Typer(
    help="Migrate the platform database.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)


def _config(url: str | None = None, app_role: str | None = None, system_role: str | None = None):
    settings = Settings()
    config = alembic_config()
    config.attributes["url"] = url or settings.admin_dsn()
    config.attributes["app_role"] = app_role or settings.app_role()
    config.attributes["system_role"] = system_role or settings.system_role()
    return config


def upgrade(url: str | None = None, app_role: str | None = None, revision: str = "head", *,
            system_role: str | None = None) -> None:
    command.upgrade(_config(url, app_role, system_role), revision)


def downgrade(url: str | None = None, app_role: str | None = None, revision: str = "base", *,
              system_role: str | None = None) -> None:
    command.downgrade(_config(url, app_role, system_role), revision)


@cli.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    upgrade(revision=revision)
    typer.echo(f"database upgraded to {revision}")


@cli.command("downgrade")
def downgrade_cmd(revision: str = typer.Argument(...)) -> None:
    """Revert migrations down to REVISION ('base' drops everything)."""
    downgrade(revision=revision)
    typer.echo(f"database downgraded to {revision}")


@cli.command("check")
def check_cmd() -> None:
    """Exit 0 when the database is at head, 1 otherwise."""
    engine = create_engine(Settings().admin_dsn())
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    typer.echo(state.describe())
    raise typer.Exit(0 if state.migrated else 1)


def main() -> None:
    cli(prog_name="python -m api.migrate")


if __name__ == "__main__":
    sys.exit(main())
