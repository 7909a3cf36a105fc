"""The one place that knows how to reach the engine for a stack.

`WorkspaceFactory` turns `Settings` into Automation API objects: a `LocalWorkspace` on the
repository root (the same `Pulumi.yaml` an operator uses by hand), the state backend, the
secrets provider, the environment the engine's processes get (PATH to the CLI and its
plugins, KUBECONFIG of the stack's cluster, the update's who/why metadata), and the raw
CLI for the few commands the SDK does not wrap the way we need.

    factory = WorkspaceFactory(Settings.from_env())
    stack = factory.select("tenant-acme", metadata=UpdateMetadata("alice", "tier change"))
    stack.preview(...)

Secrets providers are pluggable per stack (`SecretsProvider`): the default is the
passphrase provider; `VaultTransitSecrets` uses a Vault transit key per tenant.
"""

from __future__ import annotations

import json
import os
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
    PulumiCommand,
    Stack,
    create_or_select_stack,
    select_stack,
)

from . import engine
from .errors import ErrorKind, OperationError
from .history import UpdateMetadata
from .settings import Settings

CONFIG_NAMESPACE = "cameleer"


# --------------------------------------------------------------------------- secrets

class SecretsProvider(Protocol):
    """How a stack's secrets are encrypted: the `--secrets-provider` URL and its env."""

    def provider_url(self, stack: str) -> str: ...

    def env(self, stack: str) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class PassphraseSecrets:
    passphrase: str = field(repr=False)

    def provider_url(self, stack: str) -> str:
        return "passphrase"

    def env(self, stack: str) -> Mapping[str, str]:
        return {"PULUMI_CONFIG_PASSPHRASE": self.passphrase}


@dataclass(frozen=True)
class VaultTransitSecrets:
    """A Vault (or OpenBao) transit key per stack: `hashivault://<key>`.

    `key_template` is formatted with `stack` (e.g. `"cameleer-{stack}"`); the key must
    exist in the transit engine before the stack is created.
    """

    address: str
    token: str = field(repr=False)
    key_template: str = "cameleer-{stack}"

    def provider_url(self, stack: str) -> str:
        return f"hashivault://{self.key_template.format(stack=stack)}"

    def env(self, stack: str) -> Mapping[str, str]:
        return {"VAULT_ADDR": self.address, "VAULT_TOKEN": self.token}


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
        self.secrets: SecretsProvider = secrets or PassphraseSecrets(settings.passphrase)
        self._command: PulumiCommand | None = None
        self._command_lock = threading.Lock()
        self._project: dict[str, Any] | None = None

    # -- the CLI ---------------------------------------------------------------

    @property
    def pulumi_command(self) -> PulumiCommand:
        """The CLI, version-checked once (one `pulumi version` call per factory)."""
        with self._command_lock:
            if self._command is None:
                executable = self.settings.pulumi_executable
                if not executable.exists():
                    raise OperationError(
                        ErrorKind.CONFIG,
                        f"the Pulumi CLI is not installed at {executable} "
                        "(set CAMELEER_PULUMI_ROOT, or build it with tools/, see README)",
                    )
                self._command = PulumiCommand(root=str(self.settings.pulumi_root))
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
        kubeconfig: str | None = None,
        metadata: UpdateMetadata | None = None,
    ) -> dict[str, str]:
        """Everything an engine process for `stack` needs in its environment."""
        settings = self.settings
        env: dict[str, str] = dict(settings.extra_env)
        env.update({
            "PULUMI_BACKEND_URL": settings.backend_url,
            "PULUMI_HOME": str(settings.pulumi_home),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        })
        if stack is not None:
            env.update(self.secrets.env(stack))
        else:
            env.update(PassphraseSecrets(settings.passphrase).env(""))
        cluster = kubeconfig or settings.kubeconfig
        if cluster:
            env["KUBECONFIG"] = cluster
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
        if self.settings.backend_scheme == "file":
            Path(self.settings.backend_url.split("://", 1)[1]).expanduser().mkdir(parents=True, exist_ok=True)

    # -- workspaces and stacks ------------------------------------------------------

    def workspace(
        self,
        stack: str | None = None,
        *,
        kubeconfig: str | None = None,
        metadata: UpdateMetadata | None = None,
    ) -> LocalWorkspace:
        return LocalWorkspace(**self._options(stack, kubeconfig, metadata).__dict__)

    def _options(self, stack: str | None, kubeconfig: str | None,
                 metadata: UpdateMetadata | None) -> LocalWorkspaceOptions:
        self._prepare_dirs()
        return LocalWorkspaceOptions(
            work_dir=str(self.settings.project_dir),
            pulumi_home=str(self.settings.pulumi_home),
            env_vars=self.env_vars(stack, kubeconfig=kubeconfig, metadata=metadata),
            secrets_provider=self.secrets.provider_url(stack) if stack else None,
            pulumi_command=self.pulumi_command,
        )

    def attach(self, stack: str, *, metadata: UpdateMetadata | None = None) -> Stack:
        """An existing stack, without a `pulumi stack select` round trip (see engine.py);
        an operation on a stack that does not exist fails with StackNotFoundError."""
        return engine.attach(stack, LocalWorkspace(**self._options(stack, self.kubeconfig_for(stack),
                                                                   metadata).__dict__))

    def select(self, stack: str, *, metadata: UpdateMetadata | None = None) -> Stack:
        """An existing stack (StackNotFoundError from the SDK when it does not exist)."""
        return select_stack(
            stack, work_dir=str(self.settings.project_dir),
            opts=self._options(stack, self.kubeconfig_for(stack), metadata),
        )

    def create_or_select(self, stack: str, *, metadata: UpdateMetadata | None = None) -> Stack:
        return create_or_select_stack(
            stack, work_dir=str(self.settings.project_dir),
            opts=self._options(stack, self.kubeconfig_for(stack), metadata),
        )

    def run_cli(self, args: list[str], *, stack: str | None = None,
                metadata: UpdateMetadata | None = None) -> CommandResult:
        """Run `pulumi <args>` in the project with the stack's environment."""
        self._prepare_dirs()
        env = self.env_vars(stack, kubeconfig=self.kubeconfig_for(stack) if stack else None,
                            metadata=metadata)
        full = list(args) + (["--stack", stack] if stack and "--stack" not in args else [])
        return self.pulumi_command.run(full, str(self.settings.project_dir), env)

    # -- stack config files (read without the CLI) ------------------------------------

    def stack_config_file(self, stack: str) -> Path:
        return self.settings.stack_config_dir / f"Pulumi.{stack}.yaml"

    def read_stack_config(self, stack: str) -> dict[str, Any]:
        """The `config:` map of the stack's settings file (secure values stay encrypted)."""
        try:
            data = yaml.safe_load(self.stack_config_file(stack).read_text()) or {}
        except FileNotFoundError:
            return {}
        config = data.get("config") or {}
        return dict(config) if isinstance(config, dict) else {}

    def configured_stacks(self) -> list[str]:
        """Stacks that have a settings file in the stack config dir."""
        directory = self.settings.stack_config_dir
        if not directory.is_dir():
            return []
        return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))

    def kubeconfig_for(self, stack: str | None) -> str | None:
        """The stack's cluster: `cameleer:kubeconfig` when it names a file, else the default."""
        if stack:
            value = self.read_stack_config(stack).get(qualify_key("kubeconfig"))
            if isinstance(value, str) and value and Path(value).expanduser().is_file():
                return str(Path(value).expanduser())
        return self.settings.kubeconfig
