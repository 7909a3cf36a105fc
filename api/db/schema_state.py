"""Is the database migrated? Used at startup and by /readyz."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
MIGRATE_HINT = "run `python -m api.migrate upgrade` (or `cameleer-api-migrate upgrade`) with CAMELEER_DATABASE_ADMIN_URL set to the owner role's DSN"


def alembic_config() -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
    return config


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


@dataclass(frozen=True)
class SchemaState:
    current: set[str]
    heads: set[str]

    @property
    def migrated(self) -> bool:
        return self.current == self.heads

    def describe(self) -> str:
        current = ", ".join(sorted(self.current)) or "none"
        heads = ", ".join(sorted(self.heads))
        return f"database schema revision is {current}, this service needs {heads}"


def schema_state(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return SchemaState(current=current, heads=head_revisions())


class DatabaseNotMigrated(RuntimeError):
    def __init__(self, state: SchemaState) -> None:
        super().__init__(f"Refusing to start: {state.describe()}; {MIGRATE_HINT}.")
        self.state = state


def rls_bypassed_by_role(engine: Engine) -> str | None:
    """The connected role's name if PostgreSQL exempts it from row-level security."""
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT rolname, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    return row[0] if row[1] else None


def ensure_migrated(engine: Engine) -> None:
    state = schema_state(engine)
    if not state.migrated:
        raise DatabaseNotMigrated(state)
