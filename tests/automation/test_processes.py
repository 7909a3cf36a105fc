"""Each `pulumi` process leads a session of its own, and its process group is reported."""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil

from pulumi.automation import PulumiCommand

from automation.processes import SessionCommand
from automation.settings import Settings

# sha256 of the SDK's PulumiCommand.run (pulumi 3.259.0), which SessionCommand.run copies.
SDK_RUN_SHA256 = "3c39d920f02644d35df1074f7900c4cf243988d6aa279e7bc7f9cb877374d46a"


def test_the_sdk_run_that_session_command_copies_is_unchanged():
    source = inspect.getsource(PulumiCommand.run)
    assert hashlib.sha256(source.encode()).hexdigest() == SDK_RUN_SHA256, (
        "the Automation API's PulumiCommand.run changed: bring automation/processes.py's copy in line, "
        "then update SDK_RUN_SHA256")


class Recorder:
    def __init__(self) -> None:
        self.started: list[tuple[int, int, int, str | None]] = []
        self.ended: list[int] = []

    def started_(self, env, sid):
        self.started.append((sid, os.getpgid(sid), os.getsid(sid), env.get("MARK")))

    def ended_(self, env, sid):
        self.ended.append(sid)


def test_each_pulumi_process_leads_a_new_session_and_is_reported():
    command = SessionCommand(root=str(Settings.from_env().pulumi_root))
    recorder = Recorder()

    class Watcher:
        started = staticmethod(recorder.started_)
        ended = staticmethod(recorder.ended_)

    command.watcher = Watcher()
    result = command.run(["version"], os.getcwd(), {"MARK": "op-1"})
    assert result.stdout.startswith("v3.")
    [(pid, pgid, sid, mark)] = recorder.started
    assert pid == pgid == sid and sid != os.getsid(0)  # its own session and group, led by itself
    assert mark == "op-1" and recorder.ended == [pid]


def test_a_pulumi_process_dies_with_the_worker_that_started_it(tmp_path):
    """A worker killed with SIGKILL takes its engine along (PR_SET_PDEATHSIG)."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "pulumi"
    fake.write_text("#!/bin/sh\n[ \"$1\" = version ] && echo v3.259.0 && exit 0\n"
                    f"echo $$ > {tmp_path / 'pid'}\nexec sleep 600\n")
    fake.chmod(0o755)
    worker = subprocess.Popen([sys.executable, "-c",
                               "import sys; from automation.processes import SessionCommand; "
                               "SessionCommand(root=sys.argv[1], skip_version_check=True).run(['up'], '.', {})",
                               str(tmp_path)])
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text().strip():
            assert time.monotonic() < deadline, "the fake engine did not start"
            time.sleep(0.05)
        engine = int((tmp_path / "pid").read_text())
        assert os.getsid(engine) == engine  # a session of its own
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 5
        while _alive(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(engine), "the engine outlived the worker that started it"
    finally:
        if worker.poll() is None:
            worker.kill()


def _alive(pid: int) -> bool:
    from automation.locks import ProcessState, probe_process

    return probe_process(pid).state is ProcessState.RUNNING



def test_no_python_code_runs_between_fork_and_exec(tmp_path, monkeypatch):
    """A `preexec_fn` in a process with threads (a worker's engine threads, the SDK's gRPC
    servers) crashed the forked child with a segmentation fault under concurrent provisions:
    the parent-death signal is set by `setpriv`, which then execs `pulumi` in place."""
    import subprocess

    seen: list[tuple[list[str], dict]] = []
    real_popen = subprocess.Popen

    def recording_popen(args, **kwargs):
        seen.append((list(args), kwargs))
        return real_popen(args, **kwargs)

    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "pulumi"
    fake.write_text("#!/bin/sh\necho v3.259.0\n")
    fake.chmod(0o755)
    command = SessionCommand(root=str(tmp_path), skip_version_check=True)  # the SDK asks the version here
    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    command.run(["version"], str(tmp_path), {})

    [(args, kwargs)] = seen
    assert kwargs.get("preexec_fn") is None and kwargs["start_new_session"] is True
    assert args[:4] == [shutil.which("setpriv"), "--pdeathsig", "KILL", "--"] and args[4] == str(fake)
