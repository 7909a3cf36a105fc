"""Where things are and how the engine is reached: the automation layer's settings.

Everything comes from the environment, read once into a frozen `Settings`. The
`services.env` file that `scripts/services.sh start` writes into the data directory (or
`env`) is
read as a fallback, so an operator can run `cameleer drift --all` right after starting the
local services without sourcing anything; a variable set in the process always wins.

| variable                               | meaning                                  | default                          |
|----------------------------------------|------------------------------------------|----------------------------------|
| CAMELEER_PROJECT_DIR                   | the Pulumi project (holds Pulumi.yaml)   | the repository root              |
| CAMELEER_DATA_DIR                      | local state, passphrase, PULUMI_HOME     | `<project>/.cameleer`            |
| CAMELEER_BACKEND_URL / PULUMI_BACKEND_URL | state backend (`file://`, `postgres://`) | `file://<data>/state`          |
| CAMELEER_CONFIG_PASSPHRASE / PULUMI_CONFIG_PASSPHRASE (or `..._FILE`) | passphrase secrets provider | generated once into `<data>/passphrase` |
| CAMELEER_PULUMI_ROOT                   | directory whose `bin/` holds `pulumi` and the plugins | `<project>/.venv` if it has `bin/pulumi`, else the directory of `pulumi` on PATH |
| PULUMI_HOME                            | the engine's home (plugins cache, credentials) | `<data>/pulumi-home`       |
| KUBECONFIG                             | default cluster for stacks without `cameleer:kubeconfig` | unset              |
| CAMELEER_MAX_CONCURRENT_OPERATIONS     | engine processes at once                 | 2                                |
| CAMELEER_POLICY_PACKS                  | `os.pathsep`-separated policy pack dirs, each existing; empty is refused | `<project>/policy` |
| CAMELEER_ALLOW_NO_POLICY_PACKS         | `1`: tests may set CAMELEER_POLICY_PACKS=none (no pack) | unset |
| CAMELEER_LOCK_STALE_AFTER              | without leases: seconds after which a lock held from another host is presumed stale | 21600 (6 h) |
| CAMELEER_LEASE_DATABASE_URL            | PostgreSQL holding `stack_leases` (the platform database): stack leases judge other hosts' locks | unset: no leases |
| CAMELEER_LEASE_HEARTBEAT_SECONDS       | how often a running operation renews its stack's lease | 10 |
| CAMELEER_LEASE_TTL_SECONDS             | a lease not renewed for this long is taken over by any worker | 30 |
| CAMELEER_WORKER_HOST_NAME (or HOSTNAME) | the host name a lease names its holder by | the system's host name |
| CAMELEER_ACTOR                         | who the CLI acts as                      | `$USER@<host>` (or `$GITHUB_ACTOR` in CI) |
| VAULT_ADDR, VAULT_TOKEN (or BAO_*)     | Vault-API server for the service stacks' transit keys | unset: passphrase for every stack |
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import shlex
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Written by scripts/services.sh; read as fallback values (first found wins).
SERVICES_ENV_FILES = ("services.env", "env")
PASSPHRASE_FILE = "passphrase"
DEFAULT_MAX_CONCURRENT_OPERATIONS = 2
DEFAULT_LOCK_STALE_AFTER_SECONDS = 6 * 3600
DEFAULT_LEASE_HEARTBEAT_SECONDS = 10
DEFAULT_LEASE_TTL_SECONDS = 30
POLICY_PACKS_VARIABLE = "CAMELEER_POLICY_PACKS"
POLICY_PACK_FILE = "PulumiPolicy.yaml"
# Previews and updates without any policy pack: for tests only, and only asked for twice.
NO_POLICY_PACKS = "none"
ALLOW_NO_POLICY_PACKS_VARIABLE = "CAMELEER_ALLOW_NO_POLICY_PACKS"


class SettingsError(RuntimeError):
    """The environment does not describe a usable engine setup."""


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    data_dir: Path
    backend_url: str
    passphrase: str = field(repr=False)
    pulumi_root: Path | None
    pulumi_home: Path
    # No default: every preview and update runs these (empty only if a test asked for that).
    policy_packs: tuple[Path, ...]
    kubeconfig: str | None = None
    max_concurrent_operations: int = DEFAULT_MAX_CONCURRENT_OPERATIONS
    lock_stale_after_seconds: float = DEFAULT_LOCK_STALE_AFTER_SECONDS
    actor: str = "unknown"
    # Stack leases (leases.py): a DSN of the database with `stack_leases`, or None for none.
    lease_database_url: str | None = field(default=None, repr=False)
    lease_heartbeat_seconds: float = DEFAULT_LEASE_HEARTBEAT_SECONDS
    lease_ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS
    host_name: str = field(default_factory=socket.gethostname)
    # A Vault-API server (OpenBao locally) for the service stacks' transit keys.
    vault_address: str | None = None
    vault_token: str | None = field(default=None, repr=False)
    # Extra variables handed to every engine process (e.g. from services.env: PG*, VAULT_*).
    extra_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: the process environment + services.env)."""
        process_env = dict(os.environ if environ is None else environ)
        project_dir = Path(process_env.get("CAMELEER_PROJECT_DIR") or PROJECT_DIR).resolve()
        data_dir = Path(process_env.get("CAMELEER_DATA_DIR") or project_dir / ".cameleer").resolve()

        file_env: dict[str, str] = {}
        for name in SERVICES_ENV_FILES:
            file_env = read_env_file(data_dir / name, process_env)
            if file_env:
                break
        env = {**file_env, **process_env}

        def get(*names: str) -> str | None:
            for name in names:
                value = env.get(name)
                if value:
                    return value
            return None

        backend_url = get("CAMELEER_BACKEND_URL", "PULUMI_BACKEND_URL") or (
            "file://" + str(data_dir / "state")
        )
        passphrase = get("CAMELEER_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE")
        passphrase_file = get("CAMELEER_CONFIG_PASSPHRASE_FILE", "PULUMI_CONFIG_PASSPHRASE_FILE")
        if passphrase is None and passphrase_file:
            try:
                passphrase = Path(passphrase_file).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"cannot read the passphrase file {passphrase_file}: {exc}") from exc
        if passphrase is None:
            passphrase = _local_passphrase(data_dir)

        # Only pass through what the engine's processes need from services.env; the process
        # environment is inherited by the CLI anyway.
        extra_env = {k: v for k, v in file_env.items() if k not in process_env}

        return cls(
            project_dir=project_dir,
            data_dir=data_dir,
            backend_url=backend_url,
            passphrase=passphrase,
            pulumi_root=_pulumi_root(get("CAMELEER_PULUMI_ROOT"), project_dir, env.get("PATH")),
            pulumi_home=Path(get("PULUMI_HOME") or data_dir / "pulumi-home"),
            policy_packs=_policy_packs(env, project_dir),
            kubeconfig=get("KUBECONFIG"),
            max_concurrent_operations=_positive_int(
                get("CAMELEER_MAX_CONCURRENT_OPERATIONS"), DEFAULT_MAX_CONCURRENT_OPERATIONS,
                "CAMELEER_MAX_CONCURRENT_OPERATIONS",
            ),
            lock_stale_after_seconds=float(
                _positive_int(get("CAMELEER_LOCK_STALE_AFTER"), DEFAULT_LOCK_STALE_AFTER_SECONDS,
                              "CAMELEER_LOCK_STALE_AFTER")
            ),
            actor=get("CAMELEER_ACTOR") or _default_actor(env),
            lease_database_url=get("CAMELEER_LEASE_DATABASE_URL"),
            **_lease_timing(get("CAMELEER_LEASE_HEARTBEAT_SECONDS"), get("CAMELEER_LEASE_TTL_SECONDS")),
            host_name=get("CAMELEER_WORKER_HOST_NAME", "HOSTNAME") or socket.gethostname(),
            vault_address=get("BAO_ADDR", "VAULT_ADDR"),
            vault_token=get("BAO_TOKEN", "VAULT_TOKEN"),
            extra_env=extra_env,
        )

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)

    @property
    def backend_scheme(self) -> str:
        return self.backend_url.split("://", 1)[0].lower() if "://" in self.backend_url else ""

    @property
    def engine_backend_url(self) -> str:
        """The backend URL handed to the engine: for `file://`, without metadata sidecars.

        The file backend (gocloud's fileblob) writes each blob atomically (temp file, then
        rename) but its `.attrs` sidecar in place; a worker killed in that window leaves an
        empty sidecar, and every later read of the stack fails with `error: EOF`. The engine
        never reads those attributes, so `metadata=skip` loses nothing.
        """
        if self.backend_scheme != "file":
            return self.backend_url
        parts = urlsplit(self.backend_url)
        query = dict(parse_qsl(parts.query))
        query.setdefault("metadata", "skip")
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def file_state_root(self) -> Path | None:
        """The directory of a `file://` backend (without its query), else None."""
        return file_backend_root(self.backend_url)

    @property
    def stack_config_dir(self) -> Path:
        """Where `Pulumi.<stack>.yaml` files live (Pulumi.yaml's `stackConfigDir`)."""
        project_file = self.project_dir / "Pulumi.yaml"
        try:
            import yaml

            project = yaml.safe_load(project_file.read_text()) or {}
        except FileNotFoundError as exc:
            raise SettingsError(f"no Pulumi.yaml in project dir {self.project_dir}") from exc
        config_dir = project.get("stackConfigDir")
        return self.project_dir / config_dir if config_dir else self.project_dir

    @property
    def service_config_dir(self) -> Path:
        """Where the settings files of the stacks the service creates live: in the data dir,
        never in the repository (see WorkspaceFactory.config_file)."""
        return self.data_dir / "stack-config"

    @property
    def pulumi_executable(self) -> Path:
        if self.pulumi_root is None:
            raise SettingsError(
                "the Pulumi CLI was not found: set CAMELEER_PULUMI_ROOT to the directory whose "
                "bin/ holds `pulumi`, or put `pulumi` on PATH (tools/ builds it, see README)"
            )
        return self.pulumi_root / "bin" / "pulumi"


def read_env_file(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse a shell-style `KEY=value` / `export KEY=value` file; missing file -> {}.

    `$VAR` and `${VAR}` expand from earlier lines, then `environ` (default: the process's).
    """
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            continue
        try:
            parts = shlex.split(value, comments=True)
        except ValueError:
            parts = [value]
        text = " ".join(parts) if parts else ""
        if not value.lstrip().startswith("'"):  # shell semantics: no expansion in '...'
            text = _expand(text, {**environ, **values})
        values[key] = text
    return values


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _expand(text: str, env: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _pulumi_root(explicit: str | None, project_dir: Path, search_path: str | None) -> Path | None:
    if explicit:
        return Path(explicit).resolve()
    venv = project_dir / ".venv"
    if (venv / "bin" / "pulumi").exists():
        # Not resolved: .venv/bin/pulumi is a symlink and the plugins sit next to it.
        return venv
    found = shutil.which("pulumi", path=search_path)
    if found:
        return Path(found).parent.parent
    return None


def _policy_packs(env: Mapping[str, str], project_dir: Path) -> tuple[Path, ...]:
    """The packs CAMELEER_POLICY_PACKS names (each checked now), or the project's own `policy/`
    (checked before each engine run) when it is unset."""
    value = env.get(POLICY_PACKS_VARIABLE)
    if value is None:
        return (project_dir / "policy",)
    if value.strip() == NO_POLICY_PACKS:
        if env.get(ALLOW_NO_POLICY_PACKS_VARIABLE) != "1":
            raise SettingsError(
                f"{POLICY_PACKS_VARIABLE}={NO_POLICY_PACKS} would run previews and updates without any "
                f"policy pack; that is for tests only and needs {ALLOW_NO_POLICY_PACKS_VARIABLE}=1 as well"
            )
        return ()
    entries = [entry.strip() for entry in value.split(os.pathsep) if entry.strip()]
    if not entries:
        raise SettingsError(
            f"{POLICY_PACKS_VARIABLE} is set but empty, which would run previews and updates without "
            f"the guardrails: unset it to use the project's pack ({project_dir / 'policy'}), or list "
            f"pack directories separated by {os.pathsep!r}"
        )
    try:
        return tuple(require_policy_pack(project_dir / entry) for entry in entries)
    except SettingsError as exc:
        raise SettingsError(f"{POLICY_PACKS_VARIABLE}: {exc}") from exc


def require_policy_pack(path: Path) -> Path:
    """`path` if it is a CrossGuard policy pack directory (it holds PulumiPolicy.yaml)."""
    if not (path / POLICY_PACK_FILE).is_file():
        missing = "" if path.is_dir() else " (the directory does not exist)"
        raise SettingsError(f"policy pack {path} has no {POLICY_PACK_FILE}{missing}; every preview and "
                            "update runs the project's CrossGuard pack")
    return path


def _local_passphrase(data_dir: Path) -> str:
    """A per-installation passphrase, created once with mode 0600 (local development only)."""
    path = data_dir / PASSPHRASE_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its passphrase
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _positive_int(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {value!r}") from exc
    if number < 1:
        raise SettingsError(f"{name} must be at least 1, got {number}")
    return number


def _lease_timing(heartbeat: str | None, ttl: str | None) -> dict[str, float]:
    beat = _positive_int(heartbeat, DEFAULT_LEASE_HEARTBEAT_SECONDS, "CAMELEER_LEASE_HEARTBEAT_SECONDS")
    expiry = _positive_int(ttl, DEFAULT_LEASE_TTL_SECONDS, "CAMELEER_LEASE_TTL_SECONDS")
    if expiry < 2 * beat:
        raise SettingsError(f"CAMELEER_LEASE_TTL_SECONDS ({expiry}) must be at least twice "
                            f"CAMELEER_LEASE_HEARTBEAT_SECONDS ({beat}): one late heartbeat must not lose a lease")
    return {"lease_heartbeat_seconds": float(beat), "lease_ttl_seconds": float(expiry)}


def _default_actor(env: Mapping[str, str]) -> str:
    if env.get("GITHUB_ACTIONS") and env.get("GITHUB_ACTOR"):
        return f"github:{env['GITHUB_ACTOR']}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def file_backend_root(backend_url: str) -> Path | None:
    """The directory of a `file://` backend URL (without its query), else None."""
    scheme, _, rest = backend_url.partition("://")
    if scheme.lower() != "file":
        return None
    return Path(rest.split("?", 1)[0]).expanduser()


def postgres_backend_table(backend_url: str) -> tuple[str, str, str] | None:
    """For a `postgres://` backend URL: the DSN, the state table, and the prefix the engine
    puts before every blob key (the database name: `<db>/.pulumi/...`); else None."""
    parts = urlsplit(backend_url)
    if parts.scheme.lower() not in ("postgres", "postgresql"):
        return None
    query = dict(parse_qsl(parts.query))
    table = query.pop("table", "pulumi_state")
    if not table.replace("_", "").isalnum():
        raise SettingsError(f"unsafe state table name {table!r}")
    database = parts.path.strip("/")
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
    return dsn, table, f"{database}/" if database else ""
