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


# A stand-in for the engine: starts the host as the engine does (address as the argument, the
# port read from its stdout), reports both, and waits to be killed.
# A provider it starts in a process group of its own, as the engine does its plugins.
FAKE_ENGINE = """
import subprocess, sys, time
host = subprocess.Popen([sys.executable, "-u", sys.argv[1], "127.0.0.1:1"], stdout=subprocess.PIPE, text=True)
provider = subprocess.Popen(["sleep", "600"], process_group=0)
print(host.pid, host.stdout.readline().strip(), provider.pid, flush=True)
time.sleep(600)
"""
SLEEPER = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(600)\n"


def _gone(pid: int) -> bool:
    from automation.locks import ProcessState, probe_process

    return probe_process(pid).state is not ProcessState.RUNNING


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if not _gone(pid)]


def test_host_its_plugin_and_the_engines_other_plugins_exit_when_the_engine_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import time

    import grpc
    from pulumi.runtime.proto import language_pb2_grpc

    (tmp_path / "sleeper.py").write_text(SLEEPER)
    engine = subprocess.Popen([sys.executable, "-c", FAKE_ENGINE, str(REPO_ROOT / "tools" / "pyhost" / "host.py")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    pids = []
    try:
        host_pid, port, provider_pid = engine.stdout.readline().split()
        pids += [int(host_pid), int(provider_pid)]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = language_pb2.RunPluginRequest(
                pwd=str(tmp_path), kind="resource",
                info=language_pb2.ProgramInfo(root_directory=str(tmp_path), program_directory=str(tmp_path),
                                              entry_point="sleeper.py"))
            stream = language_pb2_grpc.LanguageRuntimeStub(channel).RunPlugin(request)
            pids.append(int(next(stream).stdout))
            time.sleep(2 * 1.0)  # two watchdog rounds: the host does not exit while its engine lives
            assert _wait_gone(pids, 0) == pids, "the host or its plugin exited while the engine was alive"

            os.kill(engine.pid, signal.SIGKILL)
            engine.wait()
            assert _wait_gone(pids, 10) == [], "processes left behind by a killed engine"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if engine.poll() is None:
            engine.kill()
