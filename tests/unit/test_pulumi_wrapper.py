"""scripts/pulumi-with-policy: the pinned CLI with the project's policy pack on up, preview and watch."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "scripts" / "pulumi-with-policy"


@pytest.fixture
def run(tmp_path):
    """Run the wrapper over a stand-in CLI that prints the arguments it was given."""
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)

    def wrapped(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "CAMELEER_PULUMI_ROOT": str(tmp_path)}
        return subprocess.run([str(WRAPPER), *args], env=env, capture_output=True, text=True)
    return wrapped


@pytest.mark.parametrize("command", ["up", "update", "preview", "pre", "watch"])
def test_commands_that_run_a_pack_get_the_projects_pack(run, command):
    result = run(command, "-s", "tenant-acme")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [command, "--policy-pack", str(REPO / "policy"), "-s", "tenant-acme"]


@pytest.mark.parametrize("args", [["refresh", "-s", "tenant-acme"], ["config", "set", "mode", "up"], []])
def test_other_commands_pass_through_unchanged(run, args):
    assert run(*args).stdout.split() == args


def test_a_pack_command_after_global_flags_is_refused(run):
    result = run("--cwd", str(REPO), "up", "-s", "tenant-acme")
    assert result.returncode == 1 and result.stdout == ""
    assert "put the command first (scripts/pulumi-with-policy up ...)" in result.stderr
