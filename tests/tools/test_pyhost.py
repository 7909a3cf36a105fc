"""The project's Python language host: which program and interpreter a request names.

The host's protocol handling is exercised end to end by every engine test; these pin the
two decisions it makes on its own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import language_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host():
    spec = importlib.util.spec_from_file_location("pyhost_host", REPO_ROOT / "tools" / "pyhost" / "host.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def program_info(root: Path, program_dir: Path, options: dict | None = None) -> language_pb2.ProgramInfo:
    struct = struct_pb2.Struct()
    struct.update(options or {})
    return language_pb2.ProgramInfo(root_directory=str(root), program_directory=str(program_dir),
                                    entry_point=".", options=struct)


def test_run_request_program_comes_from_program_info(host, tmp_path):
    request = language_pb2.RunRequest(program="ignored", info=program_info(tmp_path, tmp_path / "stacks"))
    assert host._program_path(request) == str(tmp_path / "stacks" / ".")


def test_policy_pack_program_comes_from_program_info_not_pwd(host, tmp_path):
    request = language_pb2.RunPluginRequest(pwd=str(tmp_path / "stacks"), kind="analyzer",
                                            info=program_info(tmp_path / "policy", tmp_path / "policy"))
    assert host._program_path(request) == str(tmp_path / "policy" / ".")


def test_legacy_request_without_program_info_uses_the_program_field(host):
    assert host._program_path(language_pb2.RunRequest(program="main.py")) == "main.py"


def test_interpreter_is_the_virtualenv_named_relative_to_the_project_root(host, tmp_path):
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    (tmp_path / "project").mkdir()
    info = program_info(tmp_path / "project", tmp_path / "project", {"virtualenv": "../venv"})
    assert Path(host._python_for(info)).resolve() == python.resolve()


def test_interpreter_falls_back_to_the_hosts_own_when_the_virtualenv_is_missing(host, tmp_path):
    info = program_info(tmp_path, tmp_path, {"virtualenv": "nowhere"})
    assert host._python_for(info) == sys.executable
