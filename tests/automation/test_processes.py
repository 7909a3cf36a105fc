"""Each `pulumi` process leads a session of its own, and its process group is reported."""

from __future__ import annotations

import hashlib
import inspect
import os

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

    def started_(self, env, pgid):
        self.started.append((pgid, os.getpgid(pgid), os.getsid(pgid), env.get("MARK")))

    def ended_(self, env, pgid):
        self.ended.append(pgid)


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
