"""The CLI's argument handling and error documents (paths that need no engine)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from automation.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: cameleer\nruntime: python\n")
    monkeypatch.setenv("CAMELEER_PROJECT_DIR", str(project))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    return project


def test_up_requires_a_reason():
    result = runner.invoke(app, ["up", "tenant-acme"])
    assert result.exit_code == 2
    assert "--reason" in result.output


def test_drift_needs_targets_or_all_but_not_both():
    for args in (["drift", "--json"], ["drift", "acme", "--all", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        doc = json.loads(result.stdout)
        assert doc["schema"] == "cameleer.drift/v1" and doc["ok"] is False
        assert doc["error"]["kind"] == "config"


def test_invalid_target_gives_a_config_error_document():
    result = runner.invoke(app, ["history", "Not_A_Slug", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc == {"schema": "cameleer.history/v1", "ok": False, "error": doc["error"]}
    assert doc["error"]["kind"] == "config" and doc["error"]["retryable"] is False


def test_bad_set_assignment_is_refused_before_the_engine_runs():
    result = runner.invoke(app, ["preview", "tenant-acme", "--set", "novalue", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["message"].startswith("expected key=value")
