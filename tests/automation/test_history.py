"""Who/why written into updates and read back from `pulumi stack history --json`."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from automation.history import UpdateMetadata, parse_entry, parse_history, parse_time

# Two entries as the v3.259.0 CLI prints them for the file backend (trimmed environment).
RAW_HISTORY = [
    {
        "version": 0,
        "kind": "update",
        "startTime": "2026-11-23T10:55:50.000Z",
        "endTime": "2026-11-23T10:55:52.000Z",
        "message": "[cameleer] who=ci kind=drift-correction why=drift correction",
        "environment": {
            "ci.build.type": "drift-correction", "ci.system": "cameleer", "exec.kind": "auto.local",
            "pulumi.version": "v3.259.0", "pulumi.flag.policy-pack": "set", "pulumi.flag.refresh": "true",
            "pulumi.env.PULUMI_CONFIG_PASSPHRASE": "set", "pulumi.arch": "amd64",
        },
        "config": {},
        "result": "succeeded",
        "resourceChanges": {"same": 1, "update": 2},
    },
    {
        "version": 0,
        "kind": "update",
        "startTime": "2026-11-23T10:54:29.000Z",
        "endTime": "2026-11-23T10:54:35.000Z",
        "message": "",
        "environment": {"exec.kind": "cli", "pulumi.version": "v3.259.0"},
        "config": {},
        "result": "failed",
        "resourceChanges": {"same": 2},
    },
]


def test_message_is_structured_and_readable():
    meta = UpdateMetadata("alice@ops", "raise quota, ticket 4711", operation_id="op-9", kind="operator")
    assert meta.message() == "[cameleer] who=alice@ops op=op-9 kind=operator why=raise quota, ticket 4711"


@pytest.mark.parametrize("meta", [
    UpdateMetadata("alice", "tier change low -> mid"),
    UpdateMetadata("signup-worker", "signup", operation_id="7f3c", kind="signup"),
    UpdateMetadata("github:octo", "drift correction", kind="drift-correction", url="https://ci/run/1"),
])
def test_message_round_trips(meta):
    parsed = UpdateMetadata.parse(meta.message())
    assert (parsed.actor, parsed.reason, parsed.operation_id, parsed.kind) == (
        meta.actor, meta.reason, meta.operation_id, meta.kind)


def test_whitespace_in_actor_and_newlines_in_reason_cannot_break_the_format():
    meta = UpdateMetadata("Jane Doe", "line one\nline two who=evil")
    parsed = UpdateMetadata.parse(meta.message())
    assert parsed.actor == "Jane_Doe"
    assert parsed.reason == "line one line two who=evil"


def test_who_and_why_are_required():
    with pytest.raises(ValueError):
        UpdateMetadata("", "why")
    with pytest.raises(ValueError):
        UpdateMetadata("who", "  ")


def test_env_vars_use_the_clis_generic_ci_channel():
    env = UpdateMetadata("a", "b", operation_id="op-1", kind="signup", url="https://x/1").env_vars()
    assert env == {"PULUMI_CI_SYSTEM": "cameleer", "PULUMI_CI_BUILD_ID": "op-1",
                   "PULUMI_CI_BUILD_TYPE": "signup", "PULUMI_CI_BUILD_URL": "https://x/1"}


def test_plain_messages_are_not_mistaken_for_ours():
    assert UpdateMetadata.parse("fix things") is None
    assert UpdateMetadata.parse("") is None


def test_history_entries_carry_who_why_and_counts():
    newest, oldest = parse_history(RAW_HISTORY)
    assert (newest.actor, newest.reason, newest.change_kind) == ("ci", "drift correction", "drift-correction")
    assert newest.resource_changes == {"same": 1, "update": 2}
    assert newest.result == "succeeded" and newest.kind == "update"
    assert newest.duration_seconds == 2.0
    assert newest.started_at == datetime(2026, 11, 23, 10, 55, 50, tzinfo=timezone.utc)
    # A hand-made update: no who/why, but still listed.
    assert (oldest.actor, oldest.reason, oldest.result) == (None, None, "failed")


def test_environment_is_reduced_to_what_an_auditor_needs():
    entry = parse_entry(RAW_HISTORY[0])
    assert entry.environment["ci.system"] == "cameleer"
    assert entry.environment["pulumi.flag.policy-pack"] == "set"
    assert "pulumi.env.PULUMI_CONFIG_PASSPHRASE" not in entry.environment
    assert "pulumi.arch" not in entry.environment


def test_diy_backends_versions_are_numbered_from_the_oldest():
    assert [e.version for e in parse_history(RAW_HISTORY)] == [2, 1]


def test_real_versions_are_kept():
    raw = [dict(RAW_HISTORY[0], version=7), dict(RAW_HISTORY[1], version=6)]
    assert [e.version for e in parse_history(raw)] == [7, 6]


def test_operation_id_falls_back_to_the_ci_build_id():
    raw = dict(RAW_HISTORY[0], message="[cameleer] who=x why=y",
               environment={"ci.system": "cameleer", "ci.build.id": "op-77"})
    assert parse_entry(raw).operation_id == "op-77"
    foreign = dict(raw, environment={"ci.system": "GitHub Actions", "ci.build.id": "123"})
    assert parse_entry(foreign).operation_id is None


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-23T10:55:50.000Z", datetime(2026, 11, 23, 10, 55, 50, tzinfo=timezone.utc)),
    ("2026-11-23T10:00:00.123456789Z", datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2026-11-23T11:00:00+01:00", datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)),
    (None, None),
    ("yesterday", None),
])
def test_times_parse(text, expected):
    assert parse_time(text) == expected
