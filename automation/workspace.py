"""The one place that knows how to reach the engine for a stack.

`WorkspaceFactory` turns `Settings` into Automation API objects: a `LocalWorkspace` on the
repository root (the same `Pulumi.yaml` an operator uses by hand), the state backend, the
secrets provider, the environment the engine's processes get (PATH to the CLI and its
plugins, the clusters' kubeconfigs, the update's who/why metadata), the stack's settings
file, and the raw CLI for the few commands the SDK does not wrap the way we need.

Settings files: an operator's stack keeps its `Pulumi.<stack>.yaml` in the repository's
`stacks/config` (reviewed, committed). The stacks the service creates keep theirs in the
data directory (`Settings.service_config_dir`), and every engine command gets it with
`--config-file`: the service never writes into the work tree, whichever stack names its
tenants choose.

    factory = WorkspaceFactory(Settings.from_env())
    stack = factory.select("tenant-acme", metadata=UpdateMetadata("alice", "tier change"))
    stack.preview(...)

Secrets providers are pluggable per stack (`SecretsProvider`): with a Vault-API server
configured (VAULT_ADDR, VAULT_TOKEN) every service stack gets its own transit key
(`transit.StackSecrets`); without one, and for operators' stacks, the passphrase provider.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from pulumi.automation import (
    CommandResult,
    LocalWorkspace,
    LocalWorkspaceOptions,
    Stack,
    select_stack,
)

from . import engine
from .errors import ErrorKind, OperationError, classify
from .history import UpdateMetadata
from .leases import ActiveLeases
from .processes import SessionCommand
from .settings import Settings
from .transit import StackSecrets, TransitKeys

CONFIG_NAMESPACE = "cameleer"


# --------------------------------------------------------------------------- secrets

class SecretsProvider(Protocol):
    """How a stack's secrets are encrypted: the `--secrets-provider` URL and its env, what
    must exist before the stack is created, and what to destroy once it is removed."""

    def provider_url(self, stack: str) -> str: ...

    def env(self, stack: str) -> Mapping[str, str]: ...

    def prepare(self, stack: str) -> None: ...

    def shred(self, stack: str) -> str | None: ...


@dataclass(frozen=True)
class PassphraseSecrets:
    passphrase: str = field(repr=False)

    def provider_url(self, stack: str) -> str:
        return "passphrase"

    def env(self, stack: str) -> Mapping[str, str]:
        return {"PULUMI_CONFIG_PASSPHRASE": self.passphrase}

    def prepare(self, stack: str) -> None:
        return None

    def shred(self, stack: str) -> str | None:
        return None  # the passphrase is shared: nothing per stack to destroy


def default_secrets(settings: Settings) -> SecretsProvider:
    """Transit keys per service stack when a Vault-API server is configured, else the passphrase."""
    if settings.vault_address and settings.vault_token:
        return StackSecrets(TransitKeys(settings.vault_address, settings.vault_token), settings.passphrase)
    return PassphraseSecrets(settings.passphrase)


# --------------------------------------------------------------------------- config values

class Secret(str):
    """A config value to store encrypted (`pulumi config set --secret`)."""


def qualify_key(key: str) -> str:
    """`tier` -> `cameleer:tier`; an already namespaced key is kept."""
    return key if ":" in key else f"{CONFIG_NAMESPACE}:{key}"


def config_json(values: Mapping[str, Any]) -> str:
    """`values` in the `pulumi config set-all --json` format (objects and lists kept structured)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        secret = isinstance(value, Secret)
        entry: dict[str, Any] = {"secret": secret}
        if isinstance(value, (dict, list, tuple)):
            structured = list(value) if isinstance(value, tuple) else value
            entry["value"] = json.dumps(structured)
            entry["objectValue"] = structured
        elif isinstance(value, bool):
            entry["value"] = "true" if value else "false"
        elif value is None:
            raise OperationError(ErrorKind.CONFIG, f"config value for {key!r} is None")
        else:
            entry["value"] = str(value)
        out[qualify_key(key)] = entry
    return json.dumps(out)


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; JSON lists, objects, numbers and booleans are parsed."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise OperationError(ErrorKind.CONFIG, f"expected key=value, got {text!r}")
    raw = raw.strip()
    value: Any = raw
    if raw[:1] in "[{" or raw in ("true", "false") or _is_number(raw):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
    return key.strip(), value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- factory

class WorkspaceFactory:
    def __init__(self, settings: Settings, secrets: SecretsProvider | None = None) -> None:
        self.settings = settings
        self.secrets: SecretsProvider = secrets or default_secrets(settings)
        self._command: SessionCommand | None = None
        self._command_lock = threading.Lock()
        self._project: dict[str, Any] | None = None
        self.leases = ActiveLeases()

    # -- the CLI ---------------------------------------------------------------

    @property
    def pulumi_command(self) -> SessionCommand:
        """The CLI, version-checked once (one `pulumi version` call per factory); each of its
        processes leads a session of its own (processes.py)."""
        with self._command_lock:
            if self._command is None:
                executable = self.settings.pulumi_executable
                if not executable.exists():
                    raise OperationError(
                        ErrorKind.CONFIG,
                        f"the Pulumi CLI is not installed at {executable} "
                        "(set CAMELEER_PULUMI_ROOT, or build it with tools/, see README)",
                    )
                self._command = SessionCommand(root=str(self.settings.pulumi_root))
                self._command.watcher = self.leases
            return self._command

    @property
    def project(self) -> dict[str, Any]:
        if self._project is None:
            path = self.settings.project_dir / "Pulumi.yaml"
            try:
                self._project = yaml.safe_load(path.read_text()) or {}
            except FileNotFoundError as exc:
                raise OperationError(ErrorKind.CONFIG, f"no Pulumi.yaml at {path}") from exc
        return self._project

    @property
    def project_name(self) -> str:
        return str(self.project.get("name", ""))

    # -- environment -------------------------------------------------------------

    def env_vars(
        self,
        stack: str | None = None,
        *,
        metadata: UpdateMetadata | None = None,
    ) -> dict[str, str]:
        """Everything an engine process for `stack` needs in its environment."""
        settings = self.settings
        env: dict[str, str] = dict(settings.extra_env)
        env.update({
            "PULUMI_BACKEND_URL": settings.engine_backend_url,
            "PULUMI_HOME": str(settings.pulumi_home),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        })
        env.update(self.secrets.env(stack or ""))
        if stack:
            env.update(self.leases.environment(stack))
        if settings.kubeconfig:
            env["KUBECONFIG"] = settings.kubeconfig
        # The CLI's directory first: the engine finds its plugins (language host, dynamic
        # provider, policy analyzer) next to it; then the project's virtualenv.
        path_parts = []
        if settings.pulumi_root is not None:
            path_parts.append(str(settings.pulumi_root / "bin"))
        venv_bin = settings.project_dir / ".venv" / "bin"
        if venv_bin.is_dir():
            path_parts.append(str(venv_bin))
        path_parts.append(os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in path_parts if p))
        if metadata is not None:
            env.update(metadata.env_vars())
        return env

    def _prepare_dirs(self) -> None:
        self.settings.pulumi_home.mkdir(parents=True, exist_ok=True)
        if self.settings.file_state_root is not None:
            self.settings.file_state_root.mkdir(parents=True, exist_ok=True)

    # -- workspaces and stacks ------------------------------------------------------

    def workspace(self, stack: str | None = None, *, metadata: UpdateMetadata | None = None) -> LocalWorkspace:
        return LocalWorkspace(**self._options(stack, metadata).__dict__)

    def _options(self, stack: str | None, metadata: UpdateMetadata | None) -> LocalWorkspaceOptions:
        self._prepare_dirs()
        return LocalWorkspaceOptions(
            work_dir=str(self.settings.project_dir),
            pulumi_home=str(self.settings.pulumi_home),
            env_vars=self.env_vars(stack, metadata=metadata),
            secrets_provider=self.secrets.provider_url(stack) if stack else None,
            pulumi_command=self.pulumi_command,
        )

    def attach(self, stack: str, *, metadata: UpdateMetadata | None = None) -> Stack:
        """An existing stack, without a `pulumi stack select` round trip (see engine.py);
        an operation on a stack that does not exist fails with StackNotFoundError."""
        return engine.attach(stack, LocalWorkspace(**self._options(stack, metadata).__dict__))

    def select(self, stack: str, *, metadata: UpdateMetadata | None = None) -> Stack:
        """An existing stack (StackNotFoundError from the SDK when it does not exist)."""
        return select_stack(stack, work_dir=str(self.settings.project_dir), opts=self._options(stack, metadata))

    def create_or_select(self, stack: str, *, metadata: UpdateMetadata | None = None,
                         in_repository: bool = False) -> Stack:
        """The stack, created first (one `stack init`) if it does not exist.

        The service's stacks get their settings file in the service's config dir. `pulumi
        stack init` writes the new stack's settings file (the passphrase provider's salt)
        next to the project file it finds and has no `--config-file`, so it runs there, in a
        directory holding a project file of the same name. `in_repository`: an operator's
        stack whose committed settings file is in the repository keeps it there.
        """
        self._init_stack(stack, self.settings.project_dir if in_repository else self._service_project_dir())
        return self.attach(stack, metadata=metadata)

    def _service_project_dir(self) -> Path:
        """The service's config dir, holding a project file of the project's name.

        Engines of other threads and processes read that file while they run, so it is
        written only when its content changes, and then whole (a new file renamed into
        place): a truncated file failed a concurrent `stack init` with "expected project
        to be an object".
        """
        directory = self.settings.service_config_dir
        directory.mkdir(parents=True, exist_ok=True)
        project_file = directory / "Pulumi.yaml"
        content = ("# Written by the control plane: lets `pulumi stack init` put the settings files of\n"
                   "# the stacks it creates here. The program is the repository's (see its Pulumi.yaml).\n"
                   f"name: {self.project_name}\nruntime: python\n")
        if not project_file.exists() or project_file.read_text() != content:
            _replace_file(project_file, content)
        return directory

    def _init_stack(self, stack: str, directory: Path) -> None:
        self.secrets.prepare(stack)
        args = ["stack", "init", stack, "--non-interactive", "--no-select"]
        url = self.secrets.provider_url(stack)
        if url != "passphrase":
            args += ["--secrets-provider", url]
        env = self.env_vars(stack)
        try:
            self.pulumi_command.run(args, str(directory), env)
        except Exception as exc:  # noqa: BLE001 - an existing stack is fine, anything else is not
            # A conflict means the stack exists: "already exists", or locked (by a killed
            # update, say); the operation that follows meets the lock and recovers it if stale.
            if classify(exc).kind is not ErrorKind.CONFLICT:
                raise

    def remove_stack(self, stack: str) -> str | None:
        """`remove_stack_record`, then the stack's encryption key (the name of the key
        destroyed, if it had its own)."""
        self.remove_stack_record(stack)
        return self.secrets.shred(stack)

    def remove_stack_record(self, stack: str) -> None:
        """`pulumi stack rm` and the service's settings file of it. An operator's settings
        file in the repository is left alone (`--preserve-config`)."""
        self.run_cli(["stack", "rm", stack, "--yes", "--preserve-config"])
        (self.settings.service_config_dir / f"Pulumi.{stack}.yaml").unlink(missing_ok=True)

    def run_cli(self, args: list[str], *, stack: str | None = None,
                metadata: UpdateMetadata | None = None) -> CommandResult:
        """Run `pulumi <args>` in the project with the stack's environment."""
        self._prepare_dirs()
        env = self.env_vars(stack, metadata=metadata)
        full = list(args) + (["--stack", stack] if stack and "--stack" not in args else [])
        return self.pulumi_command.run(full, str(self.settings.project_dir), env)

    def change_secrets_provider(self, stack: str) -> None:
        """Re-encrypt the stack's secrets with its provider (`pulumi stack change-secrets-provider`).

        The command rewrites the settings file next to the project file it finds and has no
        `--config-file`: a service stack's runs in the service's config dir (see create_or_select)."""
        self.secrets.prepare(stack)
        in_service_dir = self.config_file(stack).parent == self.settings.service_config_dir
        directory = self._service_project_dir() if in_service_dir else self.settings.project_dir
        self._prepare_dirs()
        self.pulumi_command.run(["stack", "change-secrets-provider", self.secrets.provider_url(stack), "--stack", stack],
                                str(directory), self.env_vars(stack))

    # -- stack config files (read without the CLI) ------------------------------------

    def config_file(self, stack: str) -> Path:
        """The stack's settings file: the service's if it has one, else the operator's in
        the repository, else where the service would create it."""
        service = self.settings.service_config_dir / f"Pulumi.{stack}.yaml"
        if service.exists():
            return service
        operator = self.settings.stack_config_dir / f"Pulumi.{stack}.yaml"
        return operator if operator.exists() else service

    def _settings_file(self, stack: str) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.config_file(stack).read_text()) or {}
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def read_stack_config(self, stack: str) -> dict[str, Any]:
        """The `config:` map of the stack's settings file (secure values stay encrypted)."""
        config = self._settings_file(stack).get("config") or {}
        return dict(config) if isinstance(config, dict) else {}

    def secrets_provider_in_use(self, stack: str) -> str:
        """The provider the stack's settings file names (`passphrase` when it names none)."""
        return str(self._settings_file(stack).get("secretsprovider") or "passphrase")

    def configured_stacks(self) -> list[str]:
        """Stacks that have a settings file, the operator's or the service's."""
        names: set[str] = set()
        for directory in (self.settings.stack_config_dir, self.settings.service_config_dir):
            if directory.is_dir():
                names.update(p.name[len("Pulumi."):-len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))
        return sorted(names)


def _replace_file(path: Path, content: str) -> None:
    """Write `path` whole: readers see the old content or the new, never a part."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(content)
    os.replace(tmp.name, path)
