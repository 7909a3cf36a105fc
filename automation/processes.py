"""Every `pulumi` process in a session (and process group) of its own.

The engine starts the language host, the program, the policy analyzer, the resource and
dynamic providers as its descendants, each plugin in a process group of its own, all in the
engine's session. A worker killed with SIGKILL cannot stop them, so they must be findable
afterwards: one session per engine command, whose id (the `pulumi` process's pid) the
command's lease records (leases.py), lets the recovery of that lease end the whole tree, and
only it (a session of its own also keeps a terminal's Ctrl-C or a signal to the worker's
group from reaching the engine half-way).
On Linux the `pulumi` process is also killed when the thread that started it dies (the
worker killed with SIGKILL: that thread waits for it until it ends), so an orphaned engine
does not go on changing the stack while another worker takes it over; its language host
then ends the rest of its session (tools/pyhost/host.py).

The Automation API starts `pulumi` in `PulumiCommand.run` with a plain `subprocess.Popen` and
has no option for the session, nor a hook to learn the pid. `PulumiCommand` is public
and the workspace takes any instance (`LocalWorkspaceOptions.pulumi_command`), so
`SessionCommand` overrides `run` with the SDK's own body plus `start_new_session=True`, the
`setpriv` prefix and the two hooks. tests/automation/test_processes.py pins the SDK's `run` source: an SDK
upgrade that changes it fails there, and this copy must be compared with the new one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Protocol

from pulumi.automation import CommandResult, PulumiCommand
from pulumi.automation.errors import create_command_error


def _die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL --` (util-linux, in every Debian): the kernel SIGKILLs the
    `pulumi` process when the thread that started it dies. Not a `preexec_fn`: Python code
    run between fork and exec in a process with threads (a worker's engine threads) can
    deadlock or crash the child, and did (a segmentation fault under concurrent provisions).
    Elsewhere than Linux, nothing: recovery through the lease still ends what is left."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


_DIE_WITH_PARENT = _die_with_parent_prefix()


class ProcessWatcher(Protocol):
    """Told when an engine command's session starts and ends (its id is the pid)."""

    def started(self, env: Mapping[str, str], sid: int) -> None: ...

    def ended(self, env: Mapping[str, str], sid: int) -> None: ...


class SessionCommand(PulumiCommand):
    """`PulumiCommand` whose every `pulumi` process leads a new session."""

    watcher: ProcessWatcher | None = None

    def run(self, args, cwd, additional_env, on_output=None, on_error=None) -> CommandResult:
        # From here to the `Popen`, and after it, the SDK's PulumiCommand.run (v3.259.0).
        sep_index = len(args)
        try:
            sep_index = args.index("--")
        except ValueError:
            pass
        if "--non-interactive" not in args[:sep_index]:
            args.insert(0, "--non-interactive")
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        if os.path.isabs(self.command):
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env["PATH"]])
        cmd = [self.command, *args]
        stdout_chunks: list[str] = []
        stderr_chunks: list[str] = []

        def consumer(stream, callback, chunks):
            for line in iter(stream.readline, ""):
                stripped = line.rstrip()
                if callback:
                    callback(stripped)
                chunks.append(stripped)
            stream.close()

        # Ours: setpriv execs `pulumi` in place (same pid), in a session of its own.
        with subprocess.Popen([*_DIE_WITH_PARENT, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                              env=env, encoding="utf-8", start_new_session=True) as process:
            watcher = self.watcher
            if watcher is not None:
                watcher.started(additional_env, process.pid)
            try:
                readers = [threading.Thread(target=consumer, args=(process.stdout, on_output, stdout_chunks)),
                           threading.Thread(target=consumer, args=(process.stderr, on_error, stderr_chunks))]
                for reader in readers:
                    reader.start()
                for reader in readers:
                    reader.join()
                process.wait()
            finally:
                if watcher is not None:
                    watcher.ended(additional_env, process.pid)
            code = process.returncode

        result = CommandResult(stderr="\n".join(stderr_chunks), stdout="\n".join(stdout_chunks), code=code)
        if code != 0:
            raise create_command_error(result)
        return result
