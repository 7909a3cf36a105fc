"""A tenant's schema and login role in the shared PostgreSQL, as a Pulumi dynamic provider.

One resource is one identifier used twice: a LOGIN role and a schema it owns, with the
role's search_path set to it and no other privilege (no role memberships, no grants in
other schemas, no superuser/createdb/createrole/replication/bypassrls). `read` observes
all of that, so `pulumi refresh` reports drift and the next update converges it back.

Secrets: the admin URL and the role's password are secret inputs; the password is sent to
the server only as a SCRAM-SHA-256 verifier (so it cannot appear in a server log), and no
error raised here carries either of them.

The admin role needs no superuser: CREATEROLE, ownership of the tenants' database and
pg_signal_backend are enough (`scripts/services.sh` makes `cameleer_provisioner` so). It
makes itself a member of each tenant role it creates, which PostgreSQL requires to create a
schema owned by that role.

Ownership is recorded on the objects themselves, as the Kubernetes objects carry their
owning stack: the role's and the schema's COMMENT is a JSON marker
`{"managed-by":"cameleer","v":1,"tenant":"<slug>","stacks":["<project>/<stack>", ...]}`.
- create never adopts an object without that marker, nor one marked for another tenant; it
  adopts one marked for the same tenant by adding its stack (how a tenant's data passes from
  its `tenant-<slug>` stack to its `dedicated-<slug>` stack);
- update writes a missing marker (state proves the stack made the object: objects made
  before markers existed are upgraded so) but still refuses another tenant's marker;
- delete removes its stack from the marker and drops an object only when no stack is left;
  an object without the marker, or whose marker does not list the stack, is left in place
  and said so. (A resource from before markers, whose state has no stack, drops unmarked
  objects as it always did: its state is the proof.)
The marker's read-modify-write runs under the tenant-DDL lock, so two stacks destroying at
once cannot each see the other still listed. An operator who wants a stack to take over an
object made by hand marks it first, in the tenants' database:

    COMMENT ON ROLE tenant_acme_prod IS '{"managed-by":"cameleer","v":1,"tenant":"acme","stacks":[]}';
    COMMENT ON SCHEMA tenant_acme_prod IS '{"managed-by":"cameleer","v":1,"tenant":"acme","stacks":[]}';
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator
from contextlib import contextmanager

import psycopg
import pulumi
from psycopg import sql
from pulumi import Input, Output, ResourceOptions
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

INPUT_KEYS = ("admin_url", "identifier", "password", "connection_limit", "tenant", "stack")
CONNECT_TIMEOUT_SECONDS = 10
SCRAM_ITERATIONS = 4096

ROLE_ATTRIBUTES = {
    # pg_roles column -> the value every tenant role must have
    "rolcanlogin": True,
    "rolsuper": False,
    "rolcreatedb": False,
    "rolcreaterole": False,
    "rolreplication": False,
    "rolbypassrls": False,
    "rolinherit": False,
}


class PostgresError(Exception):
    """A database operation failed; the message never contains a password or the admin URL."""


class OwnershipError(PostgresError):
    """An existing role or schema is not this stack's to take."""


# --------------------------------------------------------------------------- ownership

MANAGED_BY = "cameleer"
MARKER_VERSION = 1
MARKER_KEYS = {"ROLE": "role_marker", "SCHEMA": "schema_marker"}


@dataclass(frozen=True)
class Owner:
    """The stack (`<project>/<stack>`) that declares the resource, and its tenant's slug."""

    tenant: str
    stack: str


def marker_comment(tenant: str, stacks: list[str]) -> str:
    return json.dumps({"managed-by": MANAGED_BY, "v": MARKER_VERSION, "tenant": tenant, "stacks": sorted(stacks)},
                      separators=(",", ":"))


def parse_marker(comment: str | None) -> dict[str, Any] | None:
    """`{"tenant", "stacks"}` of an object's ownership marker; None when its comment is none of ours."""
    try:
        marker = json.loads(comment)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("managed-by") != MANAGED_BY:
        return None
    tenant, stacks = marker.get("tenant"), marker.get("stacks")
    if not isinstance(tenant, str) or not isinstance(stacks, list) or not all(isinstance(s, str) for s in stacks):
        return None
    return {"tenant": tenant, "stacks": sorted(set(stacks))}


def owns(marker: dict[str, Any] | None, owner: Owner) -> bool:
    return marker is not None and marker["tenant"] == owner.tenant and owner.stack in marker["stacks"]


def claim(kind: str, identifier: str, marker: dict[str, Any] | None, owner: Owner, *, state_owned: bool) -> list[str]:
    """The stacks to record on an existing object that `owner` is about to manage.

    Raises OwnershipError when the object is not its to take: unmarked (unless the stack's
    state proves it made the object) or marked for another tenant.
    """
    if marker is None and state_owned:
        return [owner.stack]
    if marker is None:
        other = "SCHEMA" if kind == "ROLE" else "ROLE"
        raise OwnershipError(
            f"{kind.lower()} {identifier} exists but carries no Cameleer ownership marker, so it was not made by "
            f"a stack and is never adopted. Drop or rename it, or, if it really is tenant {owner.tenant}'s, mark "
            f"it (and the {other.lower()} of that name, if there is one) for adoption: "
            f"COMMENT ON {kind} {identifier} IS '{marker_comment(owner.tenant, [])}'; "
            f"COMMENT ON {other} {identifier} IS '{marker_comment(owner.tenant, [])}'")
    if marker["tenant"] != owner.tenant:
        raise OwnershipError(
            f"{kind.lower()} {identifier} belongs to tenant {marker['tenant']} (stacks "
            f"{', '.join(marker['stacks']) or 'none'}), not to tenant {owner.tenant} of stack {owner.stack}; "
            "it is never adopted")
    return sorted({*marker["stacks"], owner.stack})


def release(kind: str, identifier: str, marker: dict[str, Any] | None,
            owner: Owner | None) -> tuple[list[str] | None, str | None]:
    """What `owner`'s delete does to an existing object: (the stacks to leave in its marker,
    or None; why it is not dropped, or None). (None, None) means drop it.

    `owner` is None for a resource from before markers: its state proves the unmarked
    object is its own.
    """
    name = f"{kind.lower()} {identifier}"
    if owner is None:
        if marker is None:
            return None, None
        return None, f"{name} left in place: it is marked for stacks {', '.join(marker['stacks']) or 'none'}"
    if marker is None:
        return None, f"{name} left in place: it carries no Cameleer ownership marker (it was not made by a stack)"
    if not owns(marker, owner):
        return None, (f"{name} left in place: its marker (tenant {marker['tenant']}, stacks "
                      f"{', '.join(marker['stacks']) or 'none'}) does not list stack {owner.stack}")
    remaining = [stack for stack in marker["stacks"] if stack != owner.stack]
    if remaining:
        return remaining, f"{name} kept for stacks {', '.join(remaining)}; stack {owner.stack} removed from its marker"
    return None, None


def desired_state(identifier: str, connection_limit: int) -> dict[str, Any]:
    """What `observe` returns for a tenant role that nobody has tampered with."""
    return {
        **ROLE_ATTRIBUTES,
        "rolconnlimit": connection_limit,
        "schema_owner": identifier,
        "search_path": identifier,
        "member_of": [],
        "foreign_grants": [],
        "password_matches": True,
    }


def drift(observed: dict[str, Any] | None, identifier: str, connection_limit: int,
          owner: Owner | None = None) -> list[str]:
    """The observed fields that differ from the desired state (all of them if unobserved).

    An unchecked password (None) is not drift: the admin may lack the right to read it.
    With an `owner`, a marker that does not list its stack (removed out of band) is drift too.
    """
    expected = desired_state(identifier, connection_limit)
    markers = list(MARKER_KEYS.values()) if owner is not None else []
    if not observed:
        return sorted([*expected, *markers])
    changed = [key for key, value in expected.items()
               if observed.get(key) != value and not (key == "password_matches" and observed.get(key) is None)]
    return sorted([*changed, *(key for key in markers if not owns(observed.get(key), owner))])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- SQL


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(verifier: str | None, password: str) -> bool:
    """Whether a stored verifier was made from `password`."""
    try:
        scheme, rest = verifier.split("$", 1)  # type: ignore[union-attr]
        iterations_salt, _keys = rest.split("$", 1)
        iterations, salt = iterations_salt.split(":", 1)
        expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except (AttributeError, ValueError):
        return False
    return scheme == "SCRAM-SHA-256" and hmac.compare_digest(expected, verifier)  # type: ignore[arg-type]


# Only a superuser may name these attributes at all, even to turn them off; a role that
# lacks them is created without them.
SUPERUSER_ONLY_ATTRIBUTES = {"rolsuper": "NOSUPERUSER", "rolreplication": "NOREPLICATION", "rolbypassrls": "NOBYPASSRLS"}


def _role_options(password: str, connection_limit: int, *, admin_is_superuser: bool) -> sql.Composed:
    reserved = " ".join(SUPERUSER_ONLY_ATTRIBUTES.values()) + " " if admin_is_superuser else ""
    return sql.SQL(
        reserved + "LOGIN NOCREATEDB NOCREATEROLE NOINHERIT CONNECTION LIMIT {limit} PASSWORD {verifier}"
    ).format(limit=sql.Literal(connection_limit), verifier=sql.Literal(scram_verifier(password)))


def _admin_is_superuser(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]


def _refuse_superuser_only_drift(observed: dict[str, Any], identifier: str) -> None:
    granted = [name for name in SUPERUSER_ONLY_ATTRIBUTES if observed.get(name)]
    if granted:
        raise PostgresError(
            f"role {identifier} has {', '.join(granted)}, which only a superuser can take away; "
            "the tenant databases' admin is no superuser: have a database superuser revoke them")


def _serialize_ddl(conn: psycopg.Connection) -> None:
    """Take the tenant-DDL lock for the rest of the transaction.

    Grants on the database and DROP OWNED rewrite the database's catalog row; two tenant
    environments changed at once (the engine runs them in parallel) otherwise fail with
    "tuple concurrently updated". It also makes each ownership marker's read-modify-write
    atomic: every transaction that reads or writes a marker takes it first (one lock for all
    identifiers, which the catalog row needs anyway, subsumes a lock per identifier).
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('cameleer:tenant-ddl'))")


def converge(conn: psycopg.Connection, identifier: str, password: str, connection_limit: int, owner: Owner, *,
             state_owned: bool) -> None:
    """Create or repair the role and schema and mark them `owner`'s, in one transaction.

    Used by create as well (`state_owned` False): a crash between committing and recording
    the resource in state leaves objects marked for this stack, and the retry adopts them.
    """
    name = sql.Identifier(identifier)
    with conn.transaction():
        _serialize_ddl(conn)
        stacks = {kind: claim(kind, identifier, marker, owner, state_owned=state_owned)
                  for kind, marker in existing_markers(conn, identifier).items()}
        observed = observe(conn, identifier, password=None) or {"member_of": [], "foreign_grants": []}
        verb = "ALTER" if _role_exists(conn, identifier) else "CREATE"
        superuser = _admin_is_superuser(conn)
        if not superuser:
            _refuse_superuser_only_drift(observed, identifier)
        conn.execute(sql.SQL(verb + " ROLE {} WITH ").format(name)
                     + _role_options(password, connection_limit, admin_is_superuser=superuser))
        _act_as(conn, identifier, superuser=superuser)
        for role in observed["member_of"]:
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), name))
        for schema in observed["foreign_grants"]:
            _revoke_schema(conn, schema, identifier)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {0} AUTHORIZATION {0}").format(name))
        conn.execute(sql.SQL("ALTER SCHEMA {0} OWNER TO {0}").format(name))
        conn.execute(sql.SQL("ALTER ROLE {0} SET search_path TO {0}").format(name))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(conn.info.dbname), name))
        for kind in MARKER_KEYS:
            _mark(conn, kind, identifier, owner.tenant, stacks.get(kind, [owner.stack]))


def existing_markers(conn: psycopg.Connection, identifier: str) -> dict[str, dict[str, Any] | None]:
    """The parsed marker of each of the role and schema `identifier` that exists, by kind."""
    found = {}
    for kind, query in (("ROLE", "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s"),
                        ("SCHEMA", "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s")):
        row = conn.execute(query, (identifier,)).fetchone()
        if row is not None:
            found[kind] = parse_marker(row[0])
    return found


def _mark(conn: psycopg.Connection, kind: str, identifier: str, tenant: str, stacks: list[str]) -> None:
    conn.execute(sql.SQL("COMMENT ON " + kind + " {} IS {}").format(
        sql.Identifier(identifier), sql.Literal(marker_comment(tenant, stacks))))


def _act_as(conn: psycopg.Connection, identifier: str, *, superuser: bool) -> None:
    """Make the admin a member of the tenant role unless it is a superuser or one already:
    CREATE SCHEMA ... AUTHORIZATION, DROP OWNED and the schema's repair need it."""
    if superuser:
        return
    if not conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (identifier,)).fetchone()[0]:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(identifier)))


def _revoke_schema(conn: psycopg.Connection, schema: str, identifier: str) -> None:
    target, grantee = sql.Identifier(schema), sql.Identifier(identifier)
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(target, grantee))
    conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(target, grantee))
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(target, grantee))


def drop(conn: psycopg.Connection, identifier: str, owner: Owner | None) -> list[str]:
    """Release `owner`'s claim on the role and schema, dropping each that no stack claims any
    more; returns why any object was left in place."""
    name = sql.Identifier(identifier)
    with conn.transaction():
        _serialize_ddl(conn)
        verdicts = {kind: release(kind, identifier, marker, owner)
                    for kind, marker in existing_markers(conn, identifier).items()}
        notes = [note for _remaining, note in verdicts.values() if note]
        for kind, (remaining, _note) in verdicts.items():
            if remaining:
                _mark(conn, kind, identifier, owner.tenant, remaining)  # type: ignore[union-attr]
        drops = {kind for kind, (remaining, note) in verdicts.items() if remaining is None and note is None}
        if drops and "ROLE" in verdicts:
            _act_as(conn, identifier, superuser=_admin_is_superuser(conn))
        if "SCHEMA" in drops:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(name))
        if "ROLE" in drops and _owns_a_kept_schema(conn, identifier):
            # DROP OWNED would take the kept schema (and its data) with the role.
            notes.append(f"role {identifier} left in place: it owns schema {identifier}, which is kept")
            drops.discard("ROLE")
        if "ROLE" in drops:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(name))
            conn.execute(sql.SQL("DROP ROLE {}").format(name))
    if "ROLE" in drops:
        # Open sessions keep working until they end; cut them so a deleted tenant is gone now.
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (identifier,))
    return notes


def _owns_a_kept_schema(conn: psycopg.Connection, identifier: str) -> bool:
    return _scalar(conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                   identifier) == identifier


def _role_exists(conn: psycopg.Connection, identifier: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (identifier,)).fetchone() is not None


def observe(conn: psycopg.Connection, identifier: str, password: str | None) -> dict[str, Any] | None:
    """The live state of the tenant's role and schema; None when the role does not exist.

    `password_matches` is None when the password was not checked (no password given, or
    the admin may not read pg_authid).
    """
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in [*ROLE_ATTRIBUTES, "rolconnlimit"])
    row = conn.execute(sql.SQL("SELECT {}, oid FROM pg_roles WHERE rolname = %s").format(columns),
                       (identifier,)).fetchone()
    if row is None:
        return None
    *attributes, oid = row
    state: dict[str, Any] = dict(zip([*ROLE_ATTRIBUTES, "rolconnlimit"], attributes))
    state["schema_owner"] = _scalar(conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                                    identifier)
    state["search_path"] = _search_path(conn, oid)
    state["member_of"] = _column(conn, """
        SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
        WHERE m.member = %s ORDER BY 1""", oid)
    state["foreign_grants"] = _column(conn, """
        SELECT DISTINCT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) a
        WHERE a.grantee = %(oid)s AND n.nspname <> %(own)s
        UNION
        SELECT DISTINCT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             aclexplode(c.relacl) a
        WHERE a.grantee = %(oid)s AND n.nspname <> %(own)s
        ORDER BY 1""", {"oid": oid, "own": identifier})
    state["password_matches"] = _password_matches(conn, identifier, password)
    markers = existing_markers(conn, identifier)
    state.update({key: markers.get(kind) for kind, key in MARKER_KEYS.items()})
    return state


def _search_path(conn: psycopg.Connection, oid: int) -> str | None:
    settings = _scalar(conn, "SELECT setconfig FROM pg_db_role_setting WHERE setrole = %s AND setdatabase = 0",
                       oid) or []
    for setting in settings:
        key, _, value = setting.partition("=")
        if key == "search_path":
            return value.strip('"')
    return None


def _password_matches(conn: psycopg.Connection, identifier: str, password: str | None) -> bool | None:
    if password is None:
        return None
    try:
        with conn.transaction():
            verifier = _scalar(conn, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", identifier)
    except psycopg.errors.InsufficientPrivilege:
        return None
    return verifier_matches(verifier, password)


def _scalar(conn: psycopg.Connection, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _column(conn: psycopg.Connection, query: str, params: Any) -> list[Any]:
    args = params if isinstance(params, dict) else (params,)
    return [row[0] for row in conn.execute(query, args).fetchall()]


# --------------------------------------------------------------------------- errors


@contextmanager
def connected(admin_url: str, *secrets: str) -> Iterator[psycopg.Connection]:
    """An autocommit admin connection; any database error becomes a redacted PostgresError."""
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            yield conn
    except psycopg.Error as error:
        raise PostgresError(redact(describe(error), admin_url, *secrets)) from None


def describe(error: psycopg.Error) -> str:
    """The server's primary message and SQLSTATE, without the statement text it may quote."""
    primary = getattr(error.diag, "message_primary", None)
    if primary:
        return f"PostgreSQL error {error.sqlstate or ''}: {primary}".replace("  ", " ")
    # Connection failures have no diagnostics; their text names host, port and user only,
    # and redaction below removes anything secret that might still appear.
    return f"PostgreSQL connection failed: {error}"


def redact(message: str, admin_url: str, *secrets: str) -> str:
    sensitive = [admin_url, *secrets, *_url_password(admin_url)]
    for value in sorted((s for s in sensitive if s), key=len, reverse=True):
        message = message.replace(value, "***")
    return message


def _url_password(url: str) -> list[str]:
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return []
    password = info.get("password")
    return [str(password)] if password else []


# --------------------------------------------------------------------------- provider


def _owner(props: dict[str, Any]) -> Owner | None:
    """The owner a resource's inputs name; None for a resource recorded before markers existed."""
    if not props.get("stack"):
        return None
    return Owner(tenant=props["tenant"], stack=props["stack"])


class TenantSchemaProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["identifier"], self._apply(props, state_owned=False))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(news, state_owned=True))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connected(props["admin_url"], props.get("password", "")) as conn:
            observed = observe(conn, id_, props.get("password"))
            database = conn.info.dbname
        if observed is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "identifier": id_, "database": database, "observed": observed})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Only a new identifier replaces; new or changed owner inputs update in place.
        replaces = ["identifier"] if olds.get("identifier") != news.get("identifier") else []
        changed_inputs = [key for key in INPUT_KEYS if olds.get(key) != news.get(key)]
        drifted = drift(olds.get("observed"), olds.get("identifier", ""), olds.get("connection_limit", -1),
                        _owner(olds))
        return DiffResult(changes=bool(changed_inputs or drifted), replaces=replaces,
                          delete_before_replace=False)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with connected(props["admin_url"], props.get("password", "")) as conn:
            notes = drop(conn, id_, _owner(props))
        for note in notes:
            pulumi.log.warn(note)

    def _apply(self, props: dict[str, Any], *, state_owned: bool) -> dict[str, Any]:
        identifier, password = props["identifier"], props["password"]
        limit = int(props["connection_limit"])
        owner = _owner(props)
        if owner is None:
            raise PostgresError(f"tenant schema {identifier}: the inputs name no owning stack and tenant")
        with connected(props["admin_url"], password) as conn:
            converge(conn, identifier, password, limit, owner, state_owned=state_owned)
            observed = observe(conn, identifier, password)
            database = conn.info.dbname
        return {**props, "database": database, "observed": observed}


class TenantSchema(Resource, module="postgres", name="TenantSchema"):
    """Pulumi type `pulumi-python:dynamic/postgres:TenantSchema`.

    `stack` (`<project>/<stack>`) and `tenant` (the slug) are recorded on the role and schema
    as their owners."""

    identifier: Output[str]
    database: Output[str]
    observed: Output[dict]

    def __init__(self, resource_name: str, *, admin_url: Input[str], identifier: str, password: Input[str],
                 connection_limit: int, tenant: str, stack: str, opts: ResourceOptions | None = None):
        props = {
            "admin_url": Output.secret(admin_url),
            "identifier": identifier,
            "password": Output.secret(password),
            "connection_limit": connection_limit,
            "tenant": tenant,
            "stack": stack,
            "database": None,
            "observed": None,
        }
        secret_outputs = ResourceOptions(additional_secret_outputs=["admin_url", "password"])
        super().__init__(TenantSchemaProvider(), resource_name, props,
                         ResourceOptions.merge(opts, secret_outputs))
