"""Engine step events -> structured diff (per URN: op and property paths with values)."""

from __future__ import annotations

import pytest

from automation.changes import (
    MISSING,
    REDACTED,
    PropertyChange,
    changes_from_events,
    format_path,
    normalize_op,
    parse_path,
    property_changes,
)
from pulumi.automation.events import StepEventMetadata


def by_name(changes):
    return {c.name: c for c in changes}


def test_preview_reports_each_resource_once_with_its_op(preview_update_events):
    changes = changes_from_events(preview_update_events, mode="preview")
    names = [c.name for c in changes]
    assert len(names) == len(set(names))
    ops = {c.name: c.op for c in changes}
    assert ops == {"cameleer-tenant-acme": "same", "ns": "same", "server": "update"}


def test_preview_leaves_out_provider_resources(preview_update_events):
    # The default dynamic provider shows as "update" in the raw events (its config changed).
    raw_types = {e.resource_pre_event.metadata.type for e in preview_update_events if e.resource_pre_event}
    assert "pulumi:providers:pulumi-python" in raw_types
    assert all(not c.type.startswith("pulumi:providers:") for c in changes_from_events(preview_update_events))


def test_preview_update_names_the_changed_manifest_paths_with_values(preview_update_events):
    server = by_name(changes_from_events(preview_update_events))["server"]
    assert [p.to_dict() for p in server.properties] == [
        {"path": "manifest.spec.replicas", "kind": "update", "replace": False, "old": 2, "new": 3},
        {"path": "manifest.spec.template.spec.containers[0].image", "kind": "update", "replace": False,
         "old": "img:1", "new": "img:2"},
    ]


def test_drift_reports_only_what_the_cluster_changed(drift_events):
    changes = by_name(changes_from_events(drift_events, mode="refresh"))
    assert changes["cameleer-tenant-acme"].op == "same"
    ns, server = changes["ns"], changes["server"]
    assert ns.op == "update" and server.op == "update"
    assert [p.to_dict() for p in ns.properties] == [
        {"path": 'manifest.metadata.labels["app.kubernetes.io/name"]', "kind": "delete", "replace": False,
         "old": "x"},
    ]
    assert {p.path: (p.kind, p.old, p.new) for p in server.properties} == {
        "manifest.metadata.annotations": ("add", MISSING, {"kubectl.kubernetes.io/restartedAt": "now"}),
        "manifest.spec.replicas": ("update", 2, 7),
    }


def test_refresh_mode_ignores_pending_refresh_steps(drift_events):
    # Every resource has a resource-pre event with op "refresh"; none may leak into the result.
    assert any(e.resource_pre_event and e.resource_pre_event.metadata.op.value == "refresh" for e in drift_events)
    assert all(c.op != "refresh" for c in changes_from_events(drift_events, mode="refresh"))


def test_internal_provider_inputs_never_show_up_as_paths(drift_events, preview_update_events):
    for events, mode in ((drift_events, "refresh"), (preview_update_events, "preview")):
        for change in changes_from_events(events, mode=mode):
            assert not any(p.path.startswith("__") for p in change.properties)


def test_unknown_mode_is_rejected(drift_events):
    with pytest.raises(ValueError):
        changes_from_events(drift_events, mode="destroy")


@pytest.mark.parametrize(("raw", "expected"), [
    ("create-replacement", "replace"),
    ("delete-replaced", "replace"),
    ("replace", "replace"),
    ("read-replacement", "read"),
    ("update", "update"),
    ("same", "same"),
])
def test_ops_are_normalized(raw, expected):
    assert normalize_op(raw) == expected


def _step(op, old_inputs, new_inputs, *, type_="pulumi-python:dynamic:Resource", detailed=None, keys=None,
          diffs=None, old_outputs=None, new_outputs=None):
    urn = f"urn:pulumi:tenant-acme::cameleer::{type_}::thing"
    state = lambda inputs, outputs: {"type": type_, "urn": urn, "inputs": inputs, "outputs": outputs or {}}  # noqa: E731
    return StepEventMetadata.from_json({
        "op": op, "urn": urn, "type": type_, "provider": "",
        "old": state(old_inputs, old_outputs), "new": state(new_inputs, new_outputs),
        "detailedDiff": detailed, "keys": keys, "diffs": diffs,
    })


def test_detailed_diff_from_a_provider_is_preferred_and_marks_replacements():
    meta = _step("replace", {"spec": {"a": 1, "b": 1}}, {"spec": {"a": 2, "b": 2}},
                 detailed={"spec.a": {"diffKind": "update-replace", "inputDiff": True}})
    changes = property_changes(meta, op="replace")
    assert changes == [PropertyChange("spec.a", "update", True, 1, 2)]


def test_replacement_keys_flag_the_paths_below_them():
    meta = _step("replace", {"name": "a", "size": 1}, {"name": "b", "size": 2}, keys=["name"])
    result = {c.path: c.replace for c in property_changes(meta, op="replace")}
    assert result == {"name": True, "size": False}


def test_list_growth_and_shrink_are_adds_and_deletes_by_index():
    meta = _step("update", {"items": [1, 2, 3]}, {"items": [1, 5]})
    assert [(c.path, c.kind, c.old, c.new) for c in property_changes(meta, op="update")] == [
        ("items[1]", "update", 2, 5),
        ("items[2]", "delete", 3, MISSING),
    ]


def test_outputs_are_compared_when_inputs_agree_and_diffs_limit_them():
    meta = _step("update", {"m": 1}, {"m": 1}, diffs=["m"],
                 old_outputs={"m": 1, "status": "a"}, new_outputs={"m": 2, "status": "b"})
    assert [c.path for c in property_changes(meta, op="update")] == ["m"]


def test_engine_diff_keys_are_the_last_resort():
    meta = _step("update", {"m": 1}, {"m": 1}, diffs=["manifest"])
    assert [(c.path, c.old, c.new) for c in property_changes(meta, op="update")] == [("manifest", MISSING, MISSING)]


def test_creates_and_deletes_carry_no_property_paths():
    assert property_changes(_step("create", {}, {"a": 1}), op="create") == []
    assert property_changes(_step("delete", {"a": 1}, {}), op="delete") == []


def test_kubernetes_secret_values_are_redacted():
    meta = _step("update",
                 {"manifest": {"kind": "Secret", "data": {"license": "b2xk"}}},
                 {"manifest": {"kind": "Secret", "data": {"license": "bmV3"}}},
                 type_="pulumi-python:dynamic/kubernetes:Secret")
    [change] = property_changes(meta, op="update")
    assert change.path == "manifest.data.license"
    assert change.old == REDACTED and change.new == REDACTED


def test_secret_looking_keys_and_engine_secrets_are_redacted():
    sig = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "x"}
    meta = _step("update", {"db": {"password": "a", "host": "h1"}, "token": sig},
                 {"db": {"password": "b", "host": "h2"}, "token": "plain"})
    result = {c.path: (c.old, c.new) for c in property_changes(meta, op="update")}
    assert result["db.password"] == (REDACTED, REDACTED)
    assert result["db.host"] == ("h1", "h2")
    assert result["token"] == (REDACTED, REDACTED)


def test_big_values_are_summarized_not_copied():
    big = {f"k{i}": "v" * 20 for i in range(50)}
    meta = _step("update", {"a": 1}, {"a": 1, "blob": big})
    [change] = property_changes(meta, op="update")
    assert change.new == "<dict of 50 item(s)>"


@pytest.mark.parametrize("parts", [
    ["manifest", "spec", "replicas"],
    ["manifest", "metadata", "labels", "app.kubernetes.io/name"],
    ["spec", "containers", 0, "image"],
    ["weird key", 3, 'quote"d'],
])
def test_paths_round_trip(parts):
    assert parse_path(format_path(parts)) == parts


def test_path_format_matches_pulumi_property_paths():
    assert format_path(["metadata", "labels", "app.kubernetes.io/name"]) == 'metadata.labels["app.kubernetes.io/name"]'
    assert format_path(["containers", 0, "image"]) == "containers[0].image"
