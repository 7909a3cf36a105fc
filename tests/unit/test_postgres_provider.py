import base64
import hashlib
import hmac
from contextlib import contextmanager

import pytest

from components.providers import postgres
from components.providers.postgres import (
    OwnershipError,
    Owner,
    TenantSchemaProvider,
    claim,
    desired_state,
    drift,
    marker_comment,
    parse_marker,
    redact,
    release,
    scram_verifier,
    verifier_matches,
)

ADMIN_URL = "postgresql://admin:admin-secret@127.0.0.1:5432/cameleer"
OWNER = Owner(tenant="demo", stack="cameleer/tenant-demo")
MARKED = {"tenant": "demo", "stacks": ["cameleer/tenant-demo"]}
STATE = {"admin_url": ADMIN_URL, "identifier": "tenant_demo_prod", "password": "p4ss", "connection_limit": 20,
         "tenant": "demo", "stack": "cameleer/tenant-demo", "database": "cameleer",
         "observed": {**desired_state("tenant_demo_prod", 20), "role_marker": MARKED, "schema_marker": MARKED}}
# A resource recorded before ownership markers: no owner inputs, nothing marked.
LEGACY_STATE = {key: value for key, value in STATE.items() if key not in ("tenant", "stack")} | {
    "observed": desired_state("tenant_demo_prod", 20)}


def test_scram_verifier_follows_rfc_7677():
    salt = b"0123456789abcdef"
    verifier = scram_verifier("pencil", salt, 4096)
    scheme, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert scheme == "SCRAM-SHA-256" and params == "4096:" + base64.b64encode(salt).decode()
    assert stored_key == hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    assert server_key == hmac.new(salted, b"Server Key", "sha256").digest()


def test_verifier_never_contains_the_password_and_is_salted():
    first, second = scram_verifier("hunter22"), scram_verifier("hunter22")
    assert "hunter22" not in first
    assert first != second


def test_verifier_matches_only_its_password():
    verifier = scram_verifier("right")
    assert verifier_matches(verifier, "right")
    assert not verifier_matches(verifier, "wrong")
    assert not verifier_matches(None, "right")
    assert not verifier_matches("md5abcdef", "right")


def test_no_drift_when_observed_is_desired():
    assert drift(desired_state("t", 20), "t", 20) == []


def test_drift_names_the_changed_fields():
    observed = {**desired_state("t", 20), "rolsuper": True, "member_of": ["pg_read_all_data"],
                "schema_owner": "postgres"}
    assert drift(observed, "t", 20) == ["member_of", "rolsuper", "schema_owner"]


def test_unchecked_password_is_not_drift_but_a_wrong_one_is():
    assert drift({**desired_state("t", 20), "password_matches": None}, "t", 20) == []
    assert drift({**desired_state("t", 20), "password_matches": False}, "t", 20) == ["password_matches"]


def test_unobserved_state_is_all_drift():
    assert drift(None, "t", 20) == sorted(desired_state("t", 20))


def test_diff_no_change():
    result = TenantSchemaProvider().diff("tenant_demo_prod", STATE, {**STATE})
    assert result.changes is False and result.replaces == []


def test_diff_new_identifier_replaces():
    result = TenantSchemaProvider().diff("tenant_demo_prod", STATE, {**STATE, "identifier": "tenant_demo_dev"})
    assert result.changes is True and result.replaces == ["identifier"]


def test_diff_password_rotation_updates_in_place():
    result = TenantSchemaProvider().diff("tenant_demo_prod", STATE, {**STATE, "password": "new"})
    assert result.changes is True and result.replaces == []


def test_diff_after_refresh_with_drift_updates():
    drifted = {**STATE, "observed": {**STATE["observed"], "rolcreatedb": True}}
    result = TenantSchemaProvider().diff("tenant_demo_prod", drifted, {**STATE})
    assert result.changes is True and result.replaces == []


def test_redact_removes_the_url_and_every_password():
    message = f"failed for {ADMIN_URL} with admin-secret and p4ss"
    cleaned = redact(message, ADMIN_URL, "p4ss")
    assert "admin-secret" not in cleaned and "p4ss" not in cleaned and ADMIN_URL not in cleaned


def test_connection_failure_message_has_no_secret():
    url = "postgresql://admin:admin-secret@127.0.0.1:1/cameleer?connect_timeout=1"
    with pytest.raises(postgres.PostgresError) as raised:
        with postgres.connected(url, "p4ss"):
            pass
    assert "admin-secret" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def _fake_connection(monkeypatch, observed):
    class Info:
        dbname = "cameleer"

    class Connection:
        info = Info()

    @contextmanager
    def connected(*_args):
        yield Connection()

    monkeypatch.setattr(postgres, "connected", connected)
    monkeypatch.setattr(postgres, "observe", lambda conn, identifier, password: observed)


def test_read_of_a_missing_role_reports_the_resource_gone(monkeypatch):
    _fake_connection(monkeypatch, observed=None)
    result = TenantSchemaProvider().read("tenant_demo_prod", STATE)
    assert result.id == "" and result.outs == {}


def test_read_reports_what_it_observes(monkeypatch):
    observed = {**desired_state("tenant_demo_prod", 20), "rolsuper": True}
    _fake_connection(monkeypatch, observed=observed)
    result = TenantSchemaProvider().read("tenant_demo_prod", STATE)
    assert result.id == "tenant_demo_prod"
    assert result.outs["observed"]["rolsuper"] is True
    assert TenantSchemaProvider().diff(result.id, result.outs, STATE).changes is True


# --------------------------------------------------------------------------- ownership


def test_a_marker_round_trips_and_anything_else_is_no_marker():
    assert parse_marker(marker_comment("demo", ["b/x", "a/y"])) == {"tenant": "demo", "stacks": ["a/y", "b/x"]}
    for comment in (None, "", "made by hand for the reporting team", "[]", '{"managed-by": "someone-else"}',
                    '{"managed-by": "cameleer", "tenant": "demo", "stacks": "cameleer/tenant-demo"}',
                    '{"managed-by": "cameleer", "stacks": []}'):
        assert parse_marker(comment) is None, comment


def test_create_never_adopts_an_unmarked_object_and_says_how_to_mark_it():
    with pytest.raises(OwnershipError) as raised:
        claim("ROLE", "tenant_demo_prod", None, OWNER, state_owned=False)
    message = str(raised.value)
    assert "role tenant_demo_prod" in message and "never adopted" in message
    assert f"COMMENT ON ROLE tenant_demo_prod IS '{marker_comment('demo', [])}'" in message


def test_an_unmarked_object_in_the_stacks_state_is_marked_as_its_own():
    assert claim("SCHEMA", "tenant_demo_prod", None, OWNER, state_owned=True) == ["cameleer/tenant-demo"]


def test_another_tenants_marker_is_refused_even_with_state():
    other = {"tenant": "other", "stacks": ["cameleer/tenant-other"]}
    for state_owned in (False, True):
        with pytest.raises(OwnershipError, match="belongs to tenant other"):
            claim("ROLE", "tenant_demo_prod", other, OWNER, state_owned=state_owned)


def test_the_same_tenants_marker_is_adopted_by_adding_the_stack():
    moving = {"tenant": "demo", "stacks": ["cameleer/tenant-demo"]}
    dedicated = Owner(tenant="demo", stack="cameleer/dedicated-demo")
    assert claim("ROLE", "tenant_demo_prod", moving, dedicated, state_owned=False) == [
        "cameleer/dedicated-demo", "cameleer/tenant-demo"]
    assert claim("ROLE", "tenant_demo_prod", moving, OWNER, state_owned=False) == ["cameleer/tenant-demo"]


def test_delete_drops_only_what_no_other_stack_claims():
    shared = {"tenant": "demo", "stacks": ["cameleer/dedicated-demo", "cameleer/tenant-demo"]}
    remaining, note = release("SCHEMA", "tenant_demo_prod", shared, OWNER)
    assert remaining == ["cameleer/dedicated-demo"] and "kept for stacks cameleer/dedicated-demo" in note
    assert release("SCHEMA", "tenant_demo_prod", MARKED, OWNER) == (None, None)


def test_delete_leaves_what_is_not_the_stacks():
    for marker in (None, {"tenant": "demo", "stacks": ["cameleer/dedicated-demo"]},
                   {"tenant": "other", "stacks": ["cameleer/tenant-demo"]}):
        remaining, note = release("ROLE", "tenant_demo_prod", marker, OWNER)
        assert remaining is None and note.startswith("role tenant_demo_prod left in place"), marker


def test_a_resource_from_before_markers_drops_its_unmarked_objects_but_nothing_marked():
    assert release("ROLE", "tenant_demo_prod", None, None) == (None, None)
    remaining, note = release("ROLE", "tenant_demo_prod", MARKED, None)
    assert remaining is None and "left in place" in note


def test_a_missing_or_foreign_marker_is_drift():
    observed = STATE["observed"]
    assert drift(observed, "tenant_demo_prod", 20, OWNER) == []
    assert drift({**observed, "role_marker": None}, "tenant_demo_prod", 20, OWNER) == ["role_marker"]
    listed_elsewhere = {"tenant": "demo", "stacks": ["cameleer/dedicated-demo"]}
    assert drift({**observed, "schema_marker": listed_elsewhere}, "tenant_demo_prod", 20, OWNER) == [
        "schema_marker"]
    assert drift(None, "tenant_demo_prod", 20, OWNER) == sorted(
        [*desired_state("tenant_demo_prod", 20), "role_marker", "schema_marker"])


def test_diff_after_refresh_with_a_removed_marker_updates():
    drifted = {**STATE, "observed": {**STATE["observed"], "schema_marker": None}}
    result = TenantSchemaProvider().diff("tenant_demo_prod", drifted, {**STATE})
    assert result.changes is True and result.replaces == []


def test_owner_inputs_added_to_a_resource_from_before_markers_update_it_in_place():
    result = TenantSchemaProvider().diff("tenant_demo_prod", LEGACY_STATE, {**STATE})
    assert result.changes is True and result.replaces == []


def test_a_changed_owner_updates_in_place():
    result = TenantSchemaProvider().diff("tenant_demo_prod", STATE, {**STATE, "stack": "cameleer/dedicated-demo"})
    assert result.changes is True and result.replaces == []


def test_create_needs_the_owner_inputs():
    with pytest.raises(postgres.PostgresError, match="no owning stack"):
        TenantSchemaProvider().create(dict(LEGACY_STATE))
