"""The tenant-schema provider against a real PostgreSQL: create, drift, repair, delete, and
ownership (the provider directly, then stacks of the real engine with objects made by hand
through `psql`).

Needs CAMELEER_POSTGRES_ADMIN_DSN (a superuser DSN, set by `source .cameleer/services.env`
after `scripts/services.sh start`; scripts/test.sh does both). Without it these tests fail,
never skip. Each test run works in a database of its own, dropped after.
"""

import json
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pulumi import automation as auto

from components import naming
from components.providers.postgres import (
    OwnershipError,
    PostgresError,
    TenantSchemaProvider,
    drift,
    marker_comment,
)

from .conftest import PROGRAMS

IDENTIFIER = f"tenant_it{uuid.uuid4().hex[:8]}_prod"
PASSWORD = "it-password-0123456789"
TENANT = IDENTIFIER.split("_")[1]
STACK = f"cameleer/tenant-{TENANT}"


@pytest.fixture(scope="module")
def admin_url(postgres_admin_dsn):
    # postgres_admin_dsn (conftest) fails the test, naming scripts/test.sh, when the DSN is unset.
    database = f"cameleer_it_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    yield make_conninfo(postgres_admin_dsn, dbname=database)
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(IDENTIFIER)))


@pytest.fixture
def props(admin_url):
    return {"admin_url": admin_url, "identifier": IDENTIFIER, "password": PASSWORD, "connection_limit": 5,
            "tenant": TENANT, "stack": STACK}


def admin(url):
    return psycopg.connect(url, autocommit=True)


def test_lifecycle(props, admin_url):
    provider = TenantSchemaProvider()
    created = provider.create(dict(props))
    assert created.id == IDENTIFIER
    assert drift(created.outs["observed"], IDENTIFIER, 5) == []
    assert created.outs["database"] == conninfo_to_dict(admin_url)["dbname"]
    assert comments(admin_url, IDENTIFIER) == (marker_comment(TENANT, [STACK]),) * 2

    with admin(admin_url) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(IDENTIFIER)))
        conn.execute("CREATE SCHEMA IF NOT EXISTS elsewhere")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA elsewhere TO {}").format(sql.Identifier(IDENTIFIER)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(IDENTIFIER)))

    refreshed = provider.read(IDENTIFIER, created.outs)
    assert drift(refreshed.outs["observed"], IDENTIFIER, 5) == ["foreign_grants", "member_of", "rolcreatedb"]
    assert refreshed.outs["observed"]["foreign_grants"] == ["elsewhere"]
    assert provider.diff(IDENTIFIER, refreshed.outs, props).changes is True

    repaired = provider.update(IDENTIFIER, refreshed.outs, dict(props))
    assert drift(repaired.outs["observed"], IDENTIFIER, 5) == []

    rotated = provider.update(IDENTIFIER, repaired.outs, {**props, "password": "rotated-password-1"})
    assert rotated.outs["observed"]["password_matches"] in (True, None)
    assert provider.read(IDENTIFIER, {**rotated.outs, "password": PASSWORD}).outs["observed"][
        "password_matches"] in (False, None)

    provider.delete(IDENTIFIER, rotated.outs)
    assert provider.read(IDENTIFIER, rotated.outs).id == ""
    with admin(admin_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (IDENTIFIER,)).fetchone() is None


def comments(url, identifier):
    """(the role's comment, the schema's comment); None for a missing object or comment."""
    with admin(url) as conn:
        role = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                            (identifier,)).fetchone()
        schema = conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                              (identifier,)).fetchone()
    return (role and role[0]), (schema and schema[0])


def test_create_adopts_its_own_leftover_but_never_a_role_made_by_hand(props, admin_url):
    name = sql.Identifier(IDENTIFIER)
    with admin(admin_url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER").format(name))
    provider = TenantSchemaProvider()
    with pytest.raises(OwnershipError, match=f"role {IDENTIFIER} exists but carries no Cameleer ownership marker"):
        provider.create(dict(props))
    with admin(admin_url) as conn:  # untouched
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (IDENTIFIER,)).fetchone() == (True,)
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (IDENTIFIER,)).fetchone() is None
        # What a crash between commit and recording the resource leaves: objects marked for this stack.
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(name, sql.Literal(marker_comment(TENANT, [STACK]))))
    created = provider.create(dict(props))
    assert created.outs["observed"]["rolsuper"] is False
    provider.delete(IDENTIFIER, created.outs)
    assert comments(admin_url, IDENTIFIER) == (None, None)


def test_destroys_at_once_by_the_last_two_stacks_drop_the_objects(props, admin_url):
    """Each delete's marker read-modify-write is serialized: two stacks deleting at once
    never both see the other still listed (and so leave the objects behind forever)."""
    stacks = [f"cameleer/tenant-{TENANT}", f"cameleer/dedicated-{TENANT}"]
    provider = TenantSchemaProvider()
    for _ in range(3):
        created = [provider.create({**props, "stack": stack}) for stack in stacks]
        assert comments(admin_url, IDENTIFIER) == (marker_comment(TENANT, stacks),) * 2
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda result: provider.delete(result.id, result.outs), created))
        assert comments(admin_url, IDENTIFIER) == (None, None)
        assert provider.read(IDENTIFIER, created[0].outs).id == ""


def test_a_resource_from_before_markers_drops_its_unmarked_objects_and_nothing_marked(props, admin_url):
    legacy = {key: value for key, value in props.items() if key not in ("tenant", "stack")}
    provider = TenantSchemaProvider()
    created = provider.create({**props, "stack": f"cameleer/dedicated-{TENANT}"})
    provider.delete(IDENTIFIER, legacy)  # marked for another stack: kept
    assert comments(admin_url, IDENTIFIER) == (marker_comment(TENANT, [f"cameleer/dedicated-{TENANT}"]),) * 2
    with admin(admin_url) as conn:
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS NULL").format(sql.Identifier(IDENTIFIER)))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS NULL").format(sql.Identifier(IDENTIFIER)))
    provider.delete(IDENTIFIER, legacy)  # unmarked, and its state is the proof: dropped
    assert provider.read(IDENTIFIER, created.outs).id == ""
    assert comments(admin_url, IDENTIFIER) == (None, None)


def test_errors_carry_no_secret(props):
    url = make_conninfo(props["admin_url"], password="wrong-secret-value", host="127.0.0.1", port="1")
    with pytest.raises(PostgresError) as raised:
        TenantSchemaProvider().read(IDENTIFIER, {**props, "admin_url": url})
    assert "wrong-secret-value" not in str(raised.value) and PASSWORD not in str(raised.value)


def test_environments_created_and_deleted_at_once_do_not_collide(props, admin_url):
    """The engine creates and deletes a tenant's environments in parallel; grants on the
    database and DROP OWNED touch the same catalog row ("tuple concurrently updated")."""
    identifiers = [f"tenant_it{uuid.uuid4().hex[:8]}_{env}" for env in ("dev", "staging", "prod", "qa")]
    provider = TenantSchemaProvider()
    try:
        for _ in range(3):
            with ThreadPoolExecutor(max_workers=len(identifiers)) as pool:
                created = list(pool.map(lambda ident: provider.create(
                    {**props, "identifier": ident, "tenant": ident.split("_")[1]}), identifiers))
                list(pool.map(lambda result: provider.delete(result.id, result.outs), created))
        with admin(admin_url) as conn:
            left = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (identifiers,)).fetchall()
        assert left == []
    finally:
        with admin(admin_url) as conn:
            for ident in identifiers:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ident)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ident)))


@pytest.fixture(scope="module")
def provisioner_url(postgres_admin_dsn):
    """A database owned by a CREATEROLE-only role, as the platform's tenant database is."""
    suffix = uuid.uuid4().hex[:8]
    database, role = f"cameleer_it_{suffix}", f"cameleer_it_provisioner_{suffix}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE NOSUPERUSER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)))
    yield make_conninfo(postgres_admin_dsn, dbname=database, user=role)
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{IDENTIFIER}_lp")))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_createrole_only_admin_creates_repairs_and_drops_without_superuser(provisioner_url, postgres_admin_dsn):
    identifier = f"{IDENTIFIER}_lp"
    with admin(provisioner_url) as conn:
        assert conn.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (False, True)
    provider = TenantSchemaProvider()
    props = {"admin_url": provisioner_url, "identifier": identifier, "password": PASSWORD, "connection_limit": 5,
             "tenant": TENANT, "stack": STACK}
    created = provider.create(dict(props))
    assert drift(created.outs["observed"], identifier, 5) == []
    assert comments(provisioner_url, identifier) == (marker_comment(TENANT, [STACK]),) * 2
    with admin(postgres_admin_dsn) as conn:  # an out-of-band change by someone with more rights
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB CONNECTION LIMIT 50").format(sql.Identifier(identifier)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(identifier)))
    refreshed = provider.read(identifier, created.outs)
    assert drift(refreshed.outs["observed"], identifier, 5) == ["member_of", "rolconnlimit", "rolcreatedb"]
    repaired = provider.update(identifier, refreshed.outs, dict(props))
    assert drift(repaired.outs["observed"], identifier, 5) == []

    with admin(postgres_admin_dsn) as conn:  # beyond what a CREATEROLE admin may repair: said so
        conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(identifier)))
    with pytest.raises(PostgresError, match="only a superuser can take away"):
        provider.update(identifier, provider.read(identifier, repaired.outs).outs, dict(props))
    with admin(postgres_admin_dsn) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(identifier)))
    provider.delete(identifier, repaired.outs)
    with admin(postgres_admin_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (identifier,)).fetchone() is None


# --------------------------------------------------------------------------- stacks of the real engine


@pytest.fixture
def tenants_database(tenant_database_url, postgres_admin_dsn):
    """The session's tenants' database (its admin a CREATEROLE-only role, as on the platform), and
    `psql(statement)`: a superuser's psql in it, standing for an operator's hand. Every role the
    test names in `identifiers` is dropped after."""
    by_hand = make_conninfo(postgres_admin_dsn, dbname=conninfo_to_dict(tenant_database_url)["dbname"])
    identifiers: list[str] = []

    def psql(statement: str) -> str:
        done = subprocess.run(["psql", by_hand, "-v", "ON_ERROR_STOP=1", "-AtXqc", statement],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    yield tenant_database_url, psql, identifiers
    for identifier in identifiers:
        if psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{identifier}'") == "1":
            psql(f"DROP SCHEMA IF EXISTS {identifier} CASCADE; DROP OWNED BY {identifier}; DROP ROLE {identifier}")


@pytest.fixture
def database_stacks(tmp_path, engine_env, tenants_database):
    """`new(stack_name, slug)` -> a stack of programs/tenant_database (one TenantDatabase, its
    environment `prod`) on the tenants' database, with a private file backend; destroyed and
    removed after the test."""
    project = tmp_path / "project"
    shutil.copytree(PROGRAMS / "tenant_database", project)
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = sys.prefix
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    state = tmp_path / "state"
    state.mkdir()
    env = {**engine_env, "PULUMI_BACKEND_URL": f"file://{state}"}
    admin_url, _psql, identifiers = tenants_database
    created: list[auto.Stack] = []

    def new(name: str, slug: str) -> auto.Stack:
        identifiers.append(naming.database_identifier(slug, "prod"))
        stack = auto.create_stack(name, work_dir=str(project), opts=auto.LocalWorkspaceOptions(env_vars=env))
        stack.set_all_config({
            "cameleer:slug": auto.ConfigValue(slug), "cameleer:environment": auto.ConfigValue("prod"),
            "cameleer:databaseAdminUrl": auto.ConfigValue(admin_url, secret=True),
            "cameleer:password": auto.ConfigValue(f"pw-{uuid.uuid4().hex}", secret=True)})
        created.append(stack)
        return stack

    yield new
    for stack in reversed(created):
        stack.destroy(on_output=lambda _: None)
        stack.workspace.remove_stack(stack.name)


def _markers(psql, identifier: str) -> tuple[dict | None, dict | None]:
    role = psql(f"SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '{identifier}'")
    schema = psql(f"SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = '{identifier}'")
    return (json.loads(role) if role else None), (json.loads(schema) if schema else None)


def _marker(slug: str, *stacks: str) -> dict:
    return {"managed-by": "cameleer", "v": 1, "tenant": slug, "stacks": sorted(f"cameleer/{s}" for s in stacks)}


def _make_by_hand(psql, identifier: str, comment: str | None = None) -> None:
    psql(f"CREATE ROLE {identifier} LOGIN; CREATE SCHEMA {identifier} AUTHORIZATION {identifier}; "
         f"CREATE TABLE {identifier}.notes (body text); INSERT INTO {identifier}.notes VALUES ('kept')")
    if comment is not None:
        psql(f"COMMENT ON ROLE {identifier} IS '{comment}'; COMMENT ON SCHEMA {identifier} IS '{comment}'")


def test_a_stack_never_adopts_nor_drops_a_role_and_schema_made_by_hand(database_stacks, tenants_database):
    _url, psql, _ = tenants_database
    slug = f"it{uuid.uuid4().hex[:8]}"
    identifier = naming.database_identifier(slug, "prod")
    _make_by_hand(psql, identifier)
    stack = database_stacks(f"tenant-{slug}", slug)

    with pytest.raises(auto.CommandError) as raised:
        stack.up(on_output=lambda _: None)
    assert f"role {identifier} exists but carries no Cameleer ownership marker" in str(raised.value)
    assert f"COMMENT ON ROLE {identifier} IS" in str(raised.value)
    stack.destroy(on_output=lambda _: None)

    assert psql(f"SELECT body FROM {identifier}.notes") == "kept"
    assert psql(f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{identifier}'") == "t"
    assert _markers(psql, identifier) == (None, None)

    # The operator hands them over deliberately, with the SQL the error names.
    handover = str(raised.value).split("for adoption: ", 1)[1].split("\n", 1)[0]
    psql(handover)
    stack.up(on_output=lambda _: None)
    assert _markers(psql, identifier) == (_marker(slug, f"tenant-{slug}"),) * 2
    assert psql(f"SELECT body FROM {identifier}.notes") == "kept"


def test_another_tenants_role_and_schema_are_refused(database_stacks, tenants_database):
    _url, psql, _ = tenants_database
    slug = f"it{uuid.uuid4().hex[:8]}"
    identifier = naming.database_identifier(slug, "prod")
    _make_by_hand(psql, identifier, marker_comment("someone-else", ["cameleer/tenant-someone-else"]))
    stack = database_stacks(f"tenant-{slug}", slug)

    with pytest.raises(auto.CommandError) as raised:
        stack.up(on_output=lambda _: None)
    assert f"role {identifier} belongs to tenant someone-else" in str(raised.value)
    stack.destroy(on_output=lambda _: None)
    assert psql(f"SELECT body FROM {identifier}.notes") == "kept"
    assert _markers(psql, identifier) == (_marker("someone-else", "tenant-someone-else"),) * 2


def test_two_stacks_of_a_tenant_share_its_data_until_the_last_is_destroyed(database_stacks, tenants_database):
    """The shared-to-dedicated move's hand-over: the dedicated stack adopts the schema that the
    tenant's shared stack made; destroying the shared stack then keeps the data."""
    _url, psql, _ = tenants_database
    slug = f"it{uuid.uuid4().hex[:8]}"
    identifier = naming.database_identifier(slug, "prod")
    shared, dedicated = database_stacks(f"tenant-{slug}", slug), database_stacks(f"dedicated-{slug}", slug)

    shared.up(on_output=lambda _: None)
    assert _markers(psql, identifier) == (_marker(slug, f"tenant-{slug}"),) * 2
    psql(f"CREATE TABLE {identifier}.notes (body text); INSERT INTO {identifier}.notes VALUES ('kept')")
    dedicated.up(on_output=lambda _: None)
    assert _markers(psql, identifier) == (_marker(slug, f"tenant-{slug}", f"dedicated-{slug}"),) * 2

    output: list[str] = []
    shared.destroy(on_output=output.append)
    assert psql(f"SELECT body FROM {identifier}.notes") == "kept"
    assert _markers(psql, identifier) == (_marker(slug, f"dedicated-{slug}"),) * 2
    assert f"kept for stacks cameleer/dedicated-{slug}" in "".join(output)

    dedicated.destroy(on_output=lambda _: None)
    assert psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{identifier}'") == "0"
    assert psql(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{identifier}'") == "0"


def _strip_owner_from_state(stack: auto.Stack) -> None:
    """Rewrite the stack's state as the provider recorded it before markers existed."""
    exported = stack.export_stack()
    for resource in exported.deployment["resources"]:
        if resource["type"] == "pulumi-python:dynamic/postgres:TenantSchema":
            for key in ("tenant", "stack"):
                resource["inputs"].pop(key)
                resource["outputs"].pop(key)
            for key in ("role_marker", "schema_marker"):
                resource["outputs"]["observed"].pop(key)
    stack.import_stack(exported)


def test_a_stack_marks_its_own_unmarked_objects_in_place(database_stacks, tenants_database):
    """Objects made before markers existed, and a marker removed out of band: the stack's
    state proves they are its own, so the next update marks them (in place, never a replace
    that would drop the data)."""
    _url, psql, _ = tenants_database
    slug = f"it{uuid.uuid4().hex[:8]}"
    identifier = naming.database_identifier(slug, "prod")
    stack = database_stacks(f"tenant-{slug}", slug)
    stack.up(on_output=lambda _: None)
    psql(f"CREATE TABLE {identifier}.notes (body text); INSERT INTO {identifier}.notes VALUES ('kept')")
    psql(f"COMMENT ON ROLE {identifier} IS NULL; COMMENT ON SCHEMA {identifier} IS NULL")
    _strip_owner_from_state(stack)

    preview = stack.preview(on_output=lambda _: None)
    assert preview.change_summary.get("update") == 1
    assert not {"replace", "create", "delete", "create-replacement"} & set(preview.change_summary)
    stack.up(on_output=lambda _: None)
    assert _markers(psql, identifier) == (_marker(slug, f"tenant-{slug}"),) * 2
    assert psql(f"SELECT body FROM {identifier}.notes") == "kept"

    psql(f"COMMENT ON SCHEMA {identifier} IS 'tidied up by hand'")
    stack.refresh(on_output=lambda _: None)
    assert stack.preview(on_output=lambda _: None).change_summary.get("update") == 1
    stack.up(on_output=lambda _: None)
    assert _markers(psql, identifier) == (_marker(slug, f"tenant-{slug}"),) * 2
