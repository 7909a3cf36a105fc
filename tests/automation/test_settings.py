"""Settings from the environment, services.env fallback, local passphrase."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from automation.settings import Settings, SettingsError, read_env_file


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "Pulumi.yaml").write_text("name: cameleer\nruntime: python\nstackConfigDir: stacks/config\n")
    return {"CAMELEER_PROJECT_DIR": str(project), "PATH": "/usr/bin:/bin", **extra}


def policy_pack(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    return path


def test_defaults_put_state_and_engine_home_in_the_data_dir(tmp_path):
    settings = Settings.from_env(base_env(tmp_path))
    data = tmp_path / "project" / ".cameleer"
    assert settings.data_dir == data
    assert settings.backend_url == f"file://{data}/state"
    assert settings.backend_scheme == "file"
    assert settings.pulumi_home == data / "pulumi-home"
    assert settings.policy_packs == (tmp_path / "project" / "policy",)
    assert settings.stack_config_dir == tmp_path / "project" / "stacks" / "config"
    assert settings.max_concurrent_operations == 2


@pytest.mark.parametrize(("configured", "engine"), [
    ("file:///srv/state", "file:///srv/state?metadata=skip"),
    ("file:///srv/state?no_tmp_dir=true", "file:///srv/state?no_tmp_dir=true&metadata=skip"),
    ("file:///srv/state?metadata=skip", "file:///srv/state?metadata=skip"),
    ("postgres://u@db/state", "postgres://u@db/state"),
])
def test_the_engine_gets_a_file_backend_without_torn_sidecars(tmp_path, configured, engine):
    settings = Settings.from_env(base_env(tmp_path, CAMELEER_BACKEND_URL=configured))
    assert settings.engine_backend_url == engine
    assert settings.file_state_root == (Path("/srv/state") if configured.startswith("file") else None)


def test_local_passphrase_is_generated_once_and_private(tmp_path):
    env = base_env(tmp_path)
    first = Settings.from_env(env).passphrase
    second = Settings.from_env(env).passphrase
    assert first == second and len(first) >= 32
    mode = (tmp_path / "project" / ".cameleer" / "passphrase").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_explicit_values_win(tmp_path):
    policy_pack(tmp_path / "project" / "policy")
    other_pack = policy_pack(tmp_path / "abs" / "pack")
    env = base_env(
        tmp_path,
        CAMELEER_BACKEND_URL="postgres://u:p@127.0.0.1:5432/state",
        PULUMI_BACKEND_URL="file:///ignored",
        PULUMI_CONFIG_PASSPHRASE="s3cret",
        CAMELEER_MAX_CONCURRENT_OPERATIONS="5",
        CAMELEER_POLICY_PACKS=f"policy{':'}{other_pack}",
        CAMELEER_ACTOR="ops-bot",
        KUBECONFIG="/k/config",
    )
    settings = Settings.from_env(env)
    assert settings.backend_url.startswith("postgres://") and settings.backend_scheme == "postgres"
    assert settings.passphrase == "s3cret"
    assert settings.max_concurrent_operations == 5
    assert settings.policy_packs == (tmp_path / "project" / "policy", other_pack)
    assert settings.actor == "ops-bot"
    assert settings.kubeconfig == "/k/config"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("value", ["", " ", ":", " : "])
def test_an_empty_policy_pack_list_is_refused(tmp_path, value):
    with pytest.raises(SettingsError, match="CAMELEER_POLICY_PACKS is set but empty") as refused:
        Settings.from_env(base_env(tmp_path, CAMELEER_POLICY_PACKS=value))
    assert "unset it to use the project's pack" in str(refused.value)


def test_a_configured_policy_pack_that_does_not_exist_is_refused(tmp_path):
    policy_pack(tmp_path / "project" / "policy")
    missing = tmp_path / "no-such-pack"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(base_env(tmp_path, CAMELEER_POLICY_PACKS=f"policy:{missing}"))
    assert str(refused.value).startswith(
        f"CAMELEER_POLICY_PACKS: policy pack {missing} has no PulumiPolicy.yaml (the directory does not exist)")


def test_a_configured_directory_without_pulumi_policy_yaml_is_refused(tmp_path):
    (tmp_path / "project" / "not-a-pack").mkdir(parents=True)
    with pytest.raises(SettingsError, match="not-a-pack has no PulumiPolicy.yaml;"):
        Settings.from_env(base_env(tmp_path, CAMELEER_POLICY_PACKS="not-a-pack"))


def test_no_policy_pack_only_when_a_test_asks_for_it_twice(tmp_path):
    with pytest.raises(SettingsError, match="needs CAMELEER_ALLOW_NO_POLICY_PACKS=1"):
        Settings.from_env(base_env(tmp_path, CAMELEER_POLICY_PACKS="none"))
    env = base_env(tmp_path, CAMELEER_POLICY_PACKS="none", CAMELEER_ALLOW_NO_POLICY_PACKS="1")
    settings = Settings.from_env(env)
    assert settings.policy_packs == ()


def test_services_env_fills_gaps_but_the_process_env_wins(tmp_path):
    env = base_env(tmp_path, KUBECONFIG="/from/process")
    data = tmp_path / "project" / ".cameleer"
    data.mkdir()
    (data / "services.env").write_text(
        "# written by scripts/services.sh\n"
        "export KUBECONFIG=/from/file\n"
        "PULUMI_CONFIG_PASSPHRASE='pass phrase'\n"
        "CAMELEER_DATABASE_URL=postgresql://127.0.0.1:55432/cameleer\n"
    )
    settings = Settings.from_env(env)
    assert settings.kubeconfig == "/from/process"
    assert settings.passphrase == "pass phrase"
    assert settings.extra_env["CAMELEER_DATABASE_URL"] == "postgresql://127.0.0.1:55432/cameleer"
    assert "KUBECONFIG" not in settings.extra_env


def test_github_actions_actor(tmp_path):
    settings = Settings.from_env(base_env(tmp_path, GITHUB_ACTIONS="true", GITHUB_ACTOR="octocat"))
    assert settings.actor == "github:octocat"


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_numbers_are_refused(tmp_path, value):
    with pytest.raises(SettingsError):
        Settings.from_env(base_env(tmp_path, CAMELEER_MAX_CONCURRENT_OPERATIONS=value))


def test_missing_cli_is_a_clear_error(tmp_path):
    settings = Settings.from_env(base_env(tmp_path, PATH=str(tmp_path)))
    assert settings.pulumi_root is None
    with pytest.raises(SettingsError, match="CAMELEER_PULUMI_ROOT"):
        _ = settings.pulumi_executable


def test_env_file_parser_handles_quotes_comments_and_junk(tmp_path):
    path = tmp_path / "x.env"
    path.write_text('A=1\nexport B="two words"\n# C=3\nnot a line\nD=x # trailing\nE=\n')
    assert read_env_file(path) == {"A": "1", "B": "two words", "D": "x", "E": ""}
    assert read_env_file(tmp_path / "missing.env") == {}


def test_passphrase_file_and_variable_expansion(tmp_path):
    secret = tmp_path / "pp"
    secret.write_text("from-file\n")
    env = base_env(tmp_path, HOME="/home/op")
    data = tmp_path / "project" / ".cameleer"
    data.mkdir()
    (data / "services.env").write_text(
        f'export PULUMI_CONFIG_PASSPHRASE_FILE="{secret}"\n'
        'export PATH="/opt/bin:$PATH"\n'
        'export PULUMI_HOME="${HOME}/.pulumi-x"\n'
        "export LITERAL='$HOME'\n"
    )
    settings = Settings.from_env(env)
    assert settings.passphrase == "from-file"
    assert settings.pulumi_home == Path("/home/op/.pulumi-x")
    assert settings.extra_env["LITERAL"] == "$HOME"


def test_leases_are_off_by_default_and_named_after_the_worker_host(tmp_path):
    import socket

    settings = Settings.from_env(base_env(tmp_path))
    assert settings.lease_database_url is None and settings.host_name == socket.gethostname()
    assert (settings.lease_heartbeat_seconds, settings.lease_ttl_seconds) == (10, 30)
    named = Settings.from_env(base_env(tmp_path, HOSTNAME="pod-7", CAMELEER_WORKER_HOST_NAME="worker-a",
                                       CAMELEER_LEASE_DATABASE_URL="postgresql://app@db/cameleer",
                                       CAMELEER_LEASE_HEARTBEAT_SECONDS="2", CAMELEER_LEASE_TTL_SECONDS="6"))
    assert named.host_name == "worker-a" and named.lease_database_url == "postgresql://app@db/cameleer"
    assert (named.lease_heartbeat_seconds, named.lease_ttl_seconds) == (2, 6)
    assert Settings.from_env(base_env(tmp_path, HOSTNAME="pod-7")).host_name == "pod-7"
    assert "app@db" not in repr(named)


def test_a_lease_that_one_late_heartbeat_would_lose_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="at least twice"):
        Settings.from_env(base_env(tmp_path, CAMELEER_LEASE_HEARTBEAT_SECONDS="10", CAMELEER_LEASE_TTL_SECONDS="15"))
