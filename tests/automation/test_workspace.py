"""The workspace factory's environment, config encoding and stack config files (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automation.errors import OperationError
from automation.history import UpdateMetadata
from automation.settings import Settings
from automation.transit import StackSecrets, TransitKeys
from automation.workspace import (
    PassphraseSecrets,
    Secret,
    WorkspaceFactory,
    config_json,
    parse_assignment,
    qualify_key,
)


@pytest.fixture
def factory(tmp_path: Path) -> WorkspaceFactory:
    project = tmp_path / "project"
    (project / "stacks" / "config").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: cameleer\nruntime: python\nstackConfigDir: stacks/config\n")
    (project / "stacks" / "config" / "Pulumi.tenant-acme.yaml").write_text("config:\n  cameleer:tier: mid\n")
    (project / "stacks" / "config" / "Pulumi.dedicated-big.yaml").write_text("config:\n  cameleer:tier: high\n")
    root = tmp_path / "pulumi-root"
    (root / "bin").mkdir(parents=True)
    settings = Settings.from_env({
        "CAMELEER_PROJECT_DIR": str(project), "CAMELEER_PULUMI_ROOT": str(root),
        "CAMELEER_DATA_DIR": str(tmp_path / "data"),
        "PULUMI_CONFIG_PASSPHRASE": "pp", "KUBECONFIG": "/default/kubeconfig", "PATH": "/usr/bin",
    })
    return WorkspaceFactory(settings)


def test_engine_env_has_backend_home_passphrase_and_cli_first_on_path(factory):
    env = factory.env_vars("tenant-acme")
    settings = factory.settings
    assert env["PULUMI_BACKEND_URL"] == settings.backend_url + "?metadata=skip"
    assert env["PULUMI_HOME"] == str(settings.pulumi_home)
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "pp"
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PATH"].split(":")[0] == str(settings.pulumi_root / "bin")
    assert env["KUBECONFIG"] == "/default/kubeconfig"


def test_update_metadata_reaches_the_engine_env(factory):
    env = factory.env_vars("tenant-acme", metadata=UpdateMetadata("a", "b", operation_id="op-1"))
    assert env["PULUMI_CI_SYSTEM"] == "cameleer" and env["PULUMI_CI_BUILD_ID"] == "op-1"


def test_service_settings_file_wins_then_the_repositorys_then_where_the_service_creates_it(factory):
    service_dir = factory.settings.service_config_dir
    repository_dir = factory.settings.stack_config_dir
    assert factory.config_file("dedicated-big") == repository_dir / "Pulumi.dedicated-big.yaml"
    assert factory.config_file("tenant-new") == service_dir / "Pulumi.tenant-new.yaml"
    service_dir.mkdir(parents=True)
    (service_dir / "Pulumi.dedicated-big.yaml").write_text("config:\n  cameleer:tier: low\n")
    assert factory.config_file("dedicated-big") == service_dir / "Pulumi.dedicated-big.yaml"
    assert factory.read_stack_config("dedicated-big") == {"cameleer:tier": "low"}
    assert not service_dir.is_relative_to(factory.settings.project_dir / "stacks")


def test_stack_config_files_are_read_without_the_cli(factory):
    assert factory.read_stack_config("dedicated-big") == {"cameleer:tier": "high"}
    assert factory.read_stack_config("tenant-missing") == {}
    assert factory.configured_stacks() == ["dedicated-big", "tenant-acme"]
    assert factory.project_name == "cameleer"


def test_missing_cli_is_a_config_error(factory):
    with pytest.raises(OperationError, match="not installed"):
        _ = factory.pulumi_command


def test_service_stacks_get_their_own_transit_key_and_operator_stacks_the_passphrase():
    secrets = StackSecrets(TransitKeys("http://127.0.0.1:8200", "tok"), "pp")
    assert secrets.provider_url("tenant-acme") == "hashivault://cameleer-stack-tenant-acme"
    assert secrets.provider_url("dedicated-big") == "hashivault://cameleer-stack-dedicated-big"
    assert secrets.provider_url("shared-eu1") == secrets.provider_url("sandbox") == "passphrase"
    assert secrets.env("tenant-acme") == {"PULUMI_CONFIG_PASSPHRASE": "pp", "VAULT_ADDR": "http://127.0.0.1:8200",
                                          "VAULT_TOKEN": "tok"}
    assert "tok" not in repr(secrets) and "pp" not in repr(secrets)
    assert PassphraseSecrets("x").provider_url("s") == "passphrase"


def test_config_json_matches_the_cli_set_all_format():
    data = json.loads(config_json({
        "tier": "mid", "environments": ["dev", "prod"], "suspended": False, "replicas": 3,
        "license": Secret("jwt"), "other:key": "v",
    }))
    assert data["cameleer:tier"] == {"secret": False, "value": "mid"}
    assert data["cameleer:environments"] == {"secret": False, "value": '["dev", "prod"]',
                                             "objectValue": ["dev", "prod"]}
    assert data["cameleer:suspended"]["value"] == "false"
    assert data["cameleer:replicas"]["value"] == "3"
    assert data["cameleer:license"] == {"secret": True, "value": "jwt"}
    assert "other:key" in data


def test_none_config_values_are_refused():
    with pytest.raises(OperationError):
        config_json({"tier": None})


@pytest.mark.parametrize(("text", "expected"), [
    ("image=reg/x@sha256:abc", ("image", "reg/x@sha256:abc")),
    ("environments=[\"dev\",\"prod\"]", ("environments", ["dev", "prod"])),
    ("suspended=true", ("suspended", True)),
    ("replicas=3", ("replicas", 3)),
    ("note=a=b", ("note", "a=b")),
    ("broken=[oops", ("broken", "[oops")),
])
def test_command_line_assignments(text, expected):
    assert parse_assignment(text) == expected


def test_assignment_needs_a_key():
    with pytest.raises(OperationError):
        parse_assignment("=x")
    with pytest.raises(OperationError):
        parse_assignment("novalue")


def test_keys_are_namespaced():
    assert qualify_key("tier") == "cameleer:tier"
    assert qualify_key("kubernetes:context") == "kubernetes:context"


def test_the_service_project_file_is_written_once_and_never_truncated_under_readers(factory, monkeypatch):
    """Concurrent `stack init`s read the service's project file: rewriting it in place
    failed one with "expected project to be an object" (seen in CI's 20-stack drift test)."""
    first = factory._service_project_dir() / "Pulumi.yaml"
    inode = first.stat().st_ino
    factory._service_project_dir()
    assert first.stat().st_ino == inode, "an unchanged project file is not rewritten"

    first.write_text("name: stale\n")
    opened_for_writing: list[str] = []
    real_open = Path.open

    def watching_open(self, mode="r", *args, **kwargs):
        if self == first and "w" in mode:
            opened_for_writing.append(mode)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", watching_open)
    factory._service_project_dir()
    assert opened_for_writing == [], "a changed project file is replaced, not truncated"
    assert "name: cameleer" in first.read_text() and first.stat().st_ino != inode
    assert [p.name for p in first.parent.iterdir()] == ["Pulumi.yaml"]
