"""A Pulumi language host for Python programs, written in Python.

Why this exists: the Go module proxy these machines can reach refuses every version of
`github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3` (HTTP 403), so the Go
language host that Pulumi ships cannot be built here. The engine only needs a process that
speaks the `pulumirpc.LanguageRuntime` gRPC service, prints its port on stdout, and runs the
program with the real Pulumi Python SDK; that is all this module does. The generated gRPC
stubs come from the pinned `pulumi` wheel, so the protocol is the engine's own.

What it implements:
- Handshake / GetPluginInfo / About: identification.
- GetRequiredPlugins / GetRequiredPackages: the resource plugins the installed provider SDKs
  declare in their `pulumi-plugin.json` (pulumi-kubernetes: `kubernetes` 4.25.0), as the Go
  host reports them, so `pulumi about` and `pulumi plugin ls --project` tell the truth.
- Run: runs the program in a fresh interpreter (`exec.py`) with the same arguments and
  environment the Go host passes to `pulumi-language-python-exec`.
- RunPlugin: runs Python plugins; CrossGuard policy packs go through `python -m pulumi.policy`.
- InstallDependencies / GetProgramDependencies: no-ops; the project's setup script owns the
  virtualenv.

The interpreter is the virtualenv named by `runtime.options.virtualenv` in Pulumi.yaml
(relative to the project root), falling back to the interpreter running this host.

When the engine that started it is gone (killed with SIGKILL, say), the host ends its own
children (program, analyzer, plugins) and exits, instead of living on under PID 1: Linux
tells it (PR_SET_PDEATHSIG), and a watchdog thread that polls the parent pid covers the rest.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

HOST_VERSION = "3.259.0"
EXEC_SCRIPT = Path(__file__).with_name("exec.py")
# The Python SDK's convention: a program that already reported its error exits with 32,
# and the engine should not print a second, generic "program failed" message.
BAIL_EXIT_CODE = 32
PR_SET_PDEATHSIG = 1
WATCHDOG_SECONDS = 1.0


def _python_for(info: language_pb2.ProgramInfo | None) -> str:
    """The interpreter of the project's virtualenv, or this host's own."""
    if info is not None and info.root_directory:
        options = dict(info.options.items()) if info.options else {}
        venv = options.get("virtualenv")
        if venv:
            venv_path = Path(venv)
            if not venv_path.is_absolute():
                venv_path = Path(info.root_directory) / venv_path
            candidate = venv_path / "bin" / "python"
            if candidate.exists():
                return str(candidate)
    return sys.executable


# Run in the program's interpreter: every installed distribution that ships a
# pulumi-plugin.json declaring a resource plugin.
_LIST_PLUGINS = """
import importlib.metadata, json
found = []
for dist in importlib.metadata.distributions():
    for file in dist.files or ():
        if file.name == "pulumi-plugin.json":
            info = json.loads(file.read_text())
            if info.get("resource"):
                found.append({"name": info.get("name") or dist.metadata["Name"],
                              "version": info.get("version") or dist.version,
                              "server": info.get("server", "")})
print(json.dumps(found))
"""


def _installed_packages(info: language_pb2.ProgramInfo | None) -> list[dict[str, str]]:
    done = subprocess.run([_python_for(info), "-c", _LIST_PLUGINS], capture_output=True, text=True, check=True)
    packages = json.loads(done.stdout or "[]")
    return [{"kind": "resource", "name": p["name"], "version": "v" + p["version"].lstrip("v"),
             "server": p["server"]} for p in packages]


def _program_path(request) -> str:
    """The program a Run or RunPlugin request names: its ProgramInfo, else the legacy field."""
    info = request.info
    if info.program_directory:
        entry = info.entry_point or "."
        return str(Path(info.program_directory) / entry)
    return request.program or "."


class PythonLanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address

    def Handshake(self, request, context):
        if request.engine_address:
            self.engine_address = request.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request, context):
        return plugin_pb2.PluginInfo(version=HOST_VERSION)

    def GetRequiredPlugins(self, request, context):
        plugins = [plugin_pb2.PluginDependency(**package) for package in _installed_packages(request.info)]
        return language_pb2.GetRequiredPluginsResponse(plugins=plugins)

    def GetRequiredPackages(self, request, context):
        packages = [plugin_pb2.PackageDependency(**package) for package in _installed_packages(request.info)]
        return language_pb2.GetRequiredPackagesResponse(packages=packages)

    def About(self, request, context):
        python = _python_for(request.info)
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
        return language_pb2.AboutResponse(executable=python, version=version)

    def GetProgramDependencies(self, request, context):
        return language_pb2.GetProgramDependenciesResponse()

    def InstallDependencies(self, request, context):
        return iter(())

    def RuntimeOptionsPrompts(self, request, context):
        return language_pb2.RuntimeOptionsResponse()

    def Run(self, request, context):
        args = [_python_for(request.info), "-u", str(EXEC_SCRIPT)]
        for flag, value in (
            ("monitor", request.monitor_address),
            ("engine", self.engine_address),
            ("project", request.project),
            ("stack", request.stack),
            ("pwd", request.pwd),
            ("organization", request.organization),
            ("dry_run", "true" if request.dryRun else "false"),
            ("parallel", str(request.parallel)),
        ):
            if value:
                args += [f"--{flag}", value]
        args.append(_program_path(request))
        args += list(request.args)

        env = dict(os.environ)
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        proc = CHILDREN.run(args, env=env)
        if proc.returncode == 0:
            return language_pb2.RunResponse()
        if proc.returncode == BAIL_EXIT_CODE:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {proc.returncode}")

    def RunPlugin(self, request, context):
        python = _python_for(request.info)
        if request.kind == "analyzer":
            command = [python, "-u", "-m", "pulumi.policy", *request.args, _program_path(request)]
        else:
            command = [python, "-u", _program_path(request), *request.args]
        env = dict(os.environ)
        for item in request.env:
            key, _, value = item.partition("=")
            env[key] = value
        proc = CHILDREN.start(command, cwd=request.pwd or None, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            yield from _stream_process(proc)
        finally:
            CHILDREN.forget(proc)


def _stream_process(proc: subprocess.Popen):
    """Relay a child's stdout and stderr as RunPluginResponse messages, then its exit code."""
    chunks: list[language_pb2.RunPluginResponse] = []
    cond = threading.Condition()
    open_streams = 2

    def pump(stream, field):
        nonlocal open_streams
        for data in iter(lambda: stream.read1(4096), b""):
            with cond:
                chunks.append(language_pb2.RunPluginResponse(**{field: data}))
                cond.notify()
        with cond:
            open_streams -= 1
            cond.notify()

    for stream, field in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        threading.Thread(target=pump, args=(stream, field), daemon=True).start()
    while True:
        with cond:
            cond.wait_for(lambda: chunks or open_streams == 0)
            pending, chunks[:] = list(chunks), []
            done = open_streams == 0
        yield from pending
        if done:
            break
    yield language_pb2.RunPluginResponse(exitcode=proc.wait())


class Children:
    """The processes this host started and has not seen end, to end them with it."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def start(self, args, **options) -> subprocess.Popen:
        proc = subprocess.Popen(args, **options)
        with self._lock:
            self._procs.add(proc)
        return proc

    def run(self, args, **options) -> subprocess.Popen:
        proc = self.start(args, **options)
        try:
            proc.wait()
        finally:
            self.forget(proc)
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                proc.kill()
            except OSError:
                pass


CHILDREN = Children()


class EngineWatch:
    """Exit, with every child, once the engine (the parent process) is gone."""

    def __init__(self) -> None:
        self.engine_pid = os.getppid()

    def engine_gone(self) -> bool:
        return os.getppid() != self.engine_pid

    def start(self) -> None:
        # The kernel's signal comes when the parent *thread* exits; the handler checks that the
        # engine process itself is gone (a Go runtime thread may end while the engine lives).
        if sys.platform.startswith("linux"):
            signal.signal(signal.SIGUSR2, lambda *_: self.exit_if_engine_gone())
            try:
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGUSR2, 0, 0, 0)
            except (OSError, AttributeError):
                pass
        threading.Thread(target=self._poll, name="engine-watchdog", daemon=True).start()
        self.exit_if_engine_gone()  # it may have died before the signal was armed

    def _poll(self) -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            self.exit_if_engine_gone()

    def exit_if_engine_gone(self) -> None:
        if not self.engine_gone():
            return
        CHILDREN.kill_all()
        # The engine led the session (the automation layer starts each `pulumi` in one of its
        # own): the rest of it is the dead engine's other plugins, each in its own group.
        if os.getsid(0) == self.engine_pid:
            _kill_session(self.engine_pid)
        os._exit(1)


def _kill_session(sid: int) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            pass


def main() -> None:
    EngineWatch().start()
    # The engine passes its address as the only positional argument, plus Go-style flags
    # (-tracing=..., -root=...) that this host has no use for.
    positional = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    engine_address = positional[0] if positional else ""

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(PythonLanguageHost(engine_address), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The engine ends plugins with a signal once it is done with them; that is a normal exit.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop(grace=None))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
