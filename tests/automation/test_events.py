"""Engine events -> OperationEvents for listeners; policy verdicts and diagnostics kept."""

from __future__ import annotations

import logging

from automation.events import EventCapture


def capture_all(events, listener=None):
    capture = EventCapture("tenant-acme", "preview", listener)
    for event in events:
        capture(event)
    return capture


def test_events_reach_the_listener_in_order_with_utc_timestamps(preview_update_events):
    seen = []
    capture_all(preview_update_events, seen.append)
    assert seen, "no events delivered"
    assert [e.sequence for e in seen] == sorted(e.sequence for e in seen)
    assert all(e.timestamp.tzinfo is not None for e in seen)
    assert {e.stack for e in seen} == {"tenant-acme"}
    types = {e.type for e in seen}
    assert {"prelude", "resource-pre", "resource-outputs", "policy", "summary"} <= types


def test_events_serialize_to_json_ready_dicts(preview_update_events):
    capture = capture_all(preview_update_events)
    for record in capture.events:
        data = record.to_dict()
        assert isinstance(data["timestamp"], str) and data["timestamp"].endswith("+00:00")
        assert set(data) == {"stack", "operation", "type", "sequence", "timestamp", "urn", "resource_type", "op",
                             "severity", "message", "data"}


def test_summary_and_resource_changes_are_kept(preview_update_events):
    capture = capture_all(preview_update_events)
    assert capture.resource_changes == {"same": 2, "update": 1}
    assert capture.summary.data["policy_packs"] == {"scratch-policy|local|/tmp/scratch/policy": "0.0.1"}


def test_policy_violations_are_collected_with_levels(policy_events):
    capture = capture_all(policy_events)
    levels = {(v.policy, v.enforcement_level) for v in capture.policy_violations}
    assert levels == {("max-replicas", "mandatory"), ("team-label", "advisory")}
    mandatory = [v for v in capture.policy_violations if v.mandatory]
    assert mandatory[0].urn.endswith("::server")
    assert "replicas must be at most 5" in mandatory[0].message


def test_error_diagnostics_are_kept_for_classification(policy_events):
    assert "preview failed" in capture_all(policy_events).error_diagnostics


def test_engine_debug_chatter_is_not_forwarded(preview_update_events):
    seen = []
    capture_all(preview_update_events, seen.append)
    assert all(e.severity != "debug" for e in seen)


def test_color_directives_are_stripped(policy_events):
    for record in capture_all(policy_events).events:
        assert "<{%" not in (record.message or "")


def test_a_failing_listener_does_not_stop_the_stream(preview_update_events, caplog):
    calls = []

    def listener(event):
        calls.append(event)
        raise RuntimeError("listener bug")

    with caplog.at_level(logging.ERROR):
        capture = capture_all(preview_update_events, listener)
    assert len(calls) == len(capture.events) > 1
    assert "listener failed" in caplog.text


def test_own_events_have_negative_sequences_and_reset_forgets_engine_state(preview_update_events):
    capture = capture_all(preview_update_events)
    own = capture.emit("retry", "again", severity="warning", data={"attempt": 1})
    assert own.sequence < 0 and own.type == "retry"
    capture.reset_engine_run()
    assert capture.engine_events == [] and capture.summary is None and capture.policy_violations == []
    assert own in capture.events
