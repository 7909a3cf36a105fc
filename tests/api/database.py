"""A throw-away PostgreSQL database (and its three roles) for one test session.

The server comes from the environment: CAMELEER_TEST_DATABASE_URL, else
CAMELEER_DATABASE_ADMIN_URL, else CAMELEER_DATABASE_URL (as written by
scripts/services.sh into .cameleer/services.env, which is read if present). That DSN
must be allowed to create databases and roles. Without one, the tests fail.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from api.settings import libpq_dsn

DSN_VARIABLES = ("CAMELEER_TEST_DATABASE_URL", "CAMELEER_DATABASE_ADMIN_URL", "CAMELEER_DATABASE_URL")
SERVICES_ENV = Path(__file__).resolve().parents[2] / ".cameleer" / "services.env"


def _services_env() -> dict[str, str]:
    if not SERVICES_ENV.exists():
        return {}
    values = {}
    for line in SERVICES_ENV.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


def server_dsn() -> URL:
    sources = [os.environ, _services_env()]
    for source in sources:
        for name in DSN_VARIABLES:
            if source.get(name):
                return make_url(source[name]).set(drivername="postgresql+psycopg")
    raise RuntimeError(
        "No PostgreSQL for the API tests: set CAMELEER_TEST_DATABASE_URL (a DSN allowed to create "
        "databases and roles), or start the local services with scripts/services.sh."
    )


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False

    name: str
    admin: URL
    owner: URL
    app: URL
    system: URL

    @property
    def app_role(self) -> str:
        return self.app.username

    @property
    def system_role(self) -> str:
        return self.system.username

    def url(self, which: URL) -> str:
        return which.render_as_string(hide_password=False)


def _admin_execute(admin: URL, *statements: sql.Composable) -> None:
    with psycopg.connect(libpq_dsn(admin.render_as_string(hide_password=False)), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def create_database(prefix: str = "cameleer_test") -> TestDatabase:
    admin = server_dsn()
    suffix = secrets.token_hex(4)
    name = f"{prefix}_{suffix}"
    owner_role, app_role = f"{prefix}_owner_{suffix}", f"{prefix}_app_{suffix}"
    system_role = f"{prefix}_system_{suffix}"
    owner_pw, app_pw, system_pw = (secrets.token_urlsafe(16) for _ in range(3))
    _admin_execute(
        admin,
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner_role), sql.Literal(owner_pw)),
        sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS PASSWORD {}").format(sql.Identifier(app_role), sql.Literal(app_pw)),
        sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS PASSWORD {}").format(sql.Identifier(system_role), sql.Literal(system_pw)),
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner_role)),
    )
    return TestDatabase(
        name=name,
        admin=admin.set(database=name),
        owner=admin.set(username=owner_role, password=owner_pw, database=name),
        app=admin.set(username=app_role, password=app_pw, database=name),
        system=admin.set(username=system_role, password=system_pw, database=name),
    )


def drop_database(db: TestDatabase) -> None:
    _admin_execute(
        server_dsn(),
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)),
        sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.app.username)),
        sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.system.username)),
        sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.owner.username)),
    )
