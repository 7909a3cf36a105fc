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


def test_drift_without_a_subcommand_is_the_check_and_watch_refuses_a_bad_shard():
    checked = runner.invoke(app, ["drift", "check", "--json"])
    implied = runner.invoke(app, ["drift", "--json"])
    assert checked.exit_code == implied.exit_code == 1
    assert json.loads(checked.stdout)["error"] == json.loads(implied.stdout)["error"]
    bad = runner.invoke(app, ["drift", "watch", "--shard", "2/2", "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["error"]["kind"] == "config"


def test_shards_split_the_clusters_and_every_cluster_lands_in_exactly_one():
    from automation.errors import OperationError
    from automation.watch import in_shard, parse_shard

    assert parse_shard("1/3") == (1, 3)
    clusters = [f"shared-eu{i}" for i in range(50)]
    owners = {cluster: [i for i in range(3) if in_shard(cluster, (i, 3))] for cluster in clusters}
    assert all(len(found) == 1 for found in owners.values())
    assert {found[0] for found in owners.values()} == {0, 1, 2}
    for text in ("3/3", "x/2", "1", "-1/2"):
        with pytest.raises(OperationError):
            parse_shard(text)
