"""The control plane run for real, for the engine tests and the benchmark.

`ControlPlane` starts the API server (`python -m api`, uvicorn on a free loopback port) and
workers (`python -m api.worker`) as subprocesses on a throwaway platform database, with the
real StackDriver (`api.stacks.automation_adapter.AutomationStackDriver`) and a private
Pulumi file backend, data directory (the stacks' settings files) and passphrase under
`root`; PULUMI_HOME is the project's, for its plugins. Nothing lands in the developer's
`.cameleer/state` or the work tree; `close()` destroys and removes every stack left in the
private backend and deletes any namespace of the tenants it signed up.
`bring_up_shared_baseline()` puts the local cluster's baseline stack on that backend, for
users without the engine tests' `shared_baseline` fixture (the browser tests, the benchmark).

A missing tool or service raises `HarnessError`; nothing here skips.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api import vault_support
from tests.api.database import TestDatabase, create_database, drop_database

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STRONG_PASSWORD = "correct-horse-battery-staple-42"
PASSPHRASE = "control-plane-engine-test-passphrase"
DEV_STATE = REPO_ROOT / ".cameleer" / "state"
BASELINE_STACK = "shared-eu1"

# Variables of the developer's environment (services.env) that must not reach the private
# set-up: the shared backend, its passphrase, and settings the harness sets itself.
DEVELOPER_ONLY_ENV = (
    "PULUMI_BACKEND_URL", "CAMELEER_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE",
    "CAMELEER_CONFIG_PASSPHRASE", "CAMELEER_CONFIG_PASSPHRASE_FILE", "CAMELEER_DATA_DIR",
    "CAMELEER_STACK_DRIVER", "CAMELEER_BILLING_GATEWAY", "CAMELEER_DATABASE_APP_ROLE", "CAMELEER_DATABASE_SYSTEM_ROLE", "CAMELEER_PULUMI_ROOT",
)


@dataclass(frozen=True)
class RegisteredCluster:
    """A local cluster the plane registers at start, as an operator does (`cameleer-clusters register`)."""

    name: str
    kind: str
    kubeconfig: str
    cpu: str = "96"
    memory: str = "384Gi"
    slots: int | None = 200

    def register_args(self) -> list[str]:
        args = ["register", self.name, "--kind", self.kind, "--region", "local", "--cpu", self.cpu,
                "--memory", self.memory, "--kubeconfig", self.kubeconfig]
        return args + (["--slots", str(self.slots)] if self.kind == "shared" else [])


class HarnessError(RuntimeError):
    """The control plane could not be started or did not answer as expected."""


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise HarnessError(f"{name} is not set: source .cameleer/services.env after scripts/services.sh start")
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pulumi_root() -> Path:
    """The directory whose bin/ holds the pinned CLI (the project's .venv, as automation finds it)."""
    venv = REPO_ROOT / ".venv"
    if (venv / "bin" / "pulumi").exists():
        return venv
    raise HarnessError(f"no pulumi CLI at {venv / 'bin' / 'pulumi'}: scripts/toolchain.sh builds it")


@contextmanager
def throwaway_tenant_database(slugs: list[str]) -> Iterator[str]:
    """Admin URL of a new database for the tenant schemas; dropped afterwards together with
    the tenant roles (cluster-wide) of `slugs`."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    admin = require_env("CAMELEER_POSTGRES_ADMIN_DSN")
    name = f"cameleer_cp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for slug in slugs:
                pattern = f"tenant\\_{slug.replace('-', '_')}\\_%"
                for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,)):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@dataclass
class ControlPlane:
    """API + workers as processes on a throwaway platform DB and a private Pulumi backend."""

    root: Path
    tenant_database_url: str
    worker_env: dict[str, str] = field(default_factory=dict)
    # None: the platform's own cluster (KUBECONFIG) as the one shared cluster, eu1.
    clusters: list[RegisteredCluster] | None = None
    db: TestDatabase | None = None
    env: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    slugs: list[str] = field(default_factory=list)
    _logs: list[Path] = field(default_factory=list)
    _baseline_kept: bool = False

    # -- start and stop ------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[list[str]]:
        """Started, and closed on exit. This process runs engine commands too (the bare CLI,
        StackOperations): meanwhile they use the plane's private backend and passphrase, never
        the developer's. Yields the list that receives the cleanup's problems."""
        problems: list[str] = []
        with pytest.MonkeyPatch.context() as env:
            for name in DEVELOPER_ONLY_ENV:
                env.delenv(name, raising=False)
            try:
                self.start()
                for name in ("PULUMI_BACKEND_URL", "PULUMI_HOME", "CAMELEER_DATA_DIR", "CAMELEER_PULUMI_ROOT"):
                    env.setenv(name, self.env[name])
                env.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
                yield problems
            finally:
                problems.extend(self.close())

    def start(self) -> ControlPlane:
        from api.migrate import upgrade

        if not (REPO_ROOT / "policy" / "PulumiPolicy.yaml").exists():
            raise HarnessError("the policy pack is missing")
        root_dir = pulumi_root()
        kubeconfig = require_env("KUBECONFIG")
        if not Path(kubeconfig).exists():
            raise HarnessError(f"KUBECONFIG {kubeconfig} does not exist: scripts/services.sh start writes it")
        self.db = create_database("cameleer_cp")
        upgrade(url=self.db.url(self.db.owner), app_role=self.db.app_role, system_role=self.db.system_role)
        state, data = self.root / "state", self.root / "data"
        state.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        port = free_port()
        # Clusters are reached through the registry's secrets only, never services.env's files.
        env = {k: v for k, v in os.environ.items()
               if k not in DEVELOPER_ONLY_ENV and not k.startswith("CAMELEER_KUBECONFIG_")}
        env.update({
            "CAMELEER_DATABASE_URL": self.db.url(self.db.app),
            "CAMELEER_DATABASE_ADMIN_URL": self.db.url(self.db.owner),
            "CAMELEER_DATABASE_SYSTEM_URL": self.db.url(self.db.system),
            "CAMELEER_JOB_QUEUE": f"cp-{secrets.token_hex(3)}",
            "CAMELEER_HTTP_HOST": "127.0.0.1",
            "CAMELEER_HTTP_PORT": str(port),
            "CAMELEER_LOG_LEVEL": "INFO",
            # the automation layer: private backend, data dir, engine home, passphrase
            "CAMELEER_DATA_DIR": str(data),
            "PULUMI_BACKEND_URL": f"file://{state}",
            # The project's engine home: the kubernetes provider plugin is installed there.
            "PULUMI_HOME": require_env("PULUMI_HOME"),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "CAMELEER_PULUMI_ROOT": str(root_dir),
            "PATH": f"{root_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "KUBECONFIG": kubeconfig,
            "CAMELEER_TENANT_DATABASE_ADMIN_URL": self.tenant_database_url,
            "CAMELEER_TENANT_DATABASE_ENDPOINT": require_env("CAMELEER_TENANT_DATABASE_ENDPOINT"),
            # Where the tenant servers are told to reach OpenBao and this control plane.
            "CAMELEER_TENANT_SECRETS_ADDRESS": require_env("VAULT_ADDR"),
            "CAMELEER_TENANT_CONTROL_PLANE_URL": f"http://127.0.0.1:{port}",
            "PYTHONUNBUFFERED": "1",
            # Every signup comes from this loopback address: the address limit is not under test here.
            "CAMELEER_SIGNUP_ADDRESS_MAX": "1000000",
        })
        env.update(self.worker_env)
        self.env = env
        # The Stripe catalog (stripe-mock) in this database, as an operator's first deploy does.
        subprocess.run([sys.executable, "-m", "api.billing.cli", "sync"], env=env, cwd=REPO_ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        for cluster in self.clusters or [RegisteredCluster("eu1", "shared", kubeconfig)]:
            self.clusters_cli(*cluster.register_args())
        self.base_url = f"http://127.0.0.1:{port}"
        self.api = self._spawn("api", ["-m", "api"])
        self._wait_ready()
        return self

    def bring_up_shared_baseline(self) -> None:
        """The local cluster's `shared-eu1` baseline stack on the private backend: tenants need its
        PriorityClasses. Objects that were there before (the demo's, another session's) are kept
        by `close()`, which then only removes the stack; otherwise it destroys them."""
        from kubernetes import client, config

        from automation.history import UpdateMetadata
        from automation.tenants import TenantPlatform, baseline_config
        from components.catalog import Placement, tiers_placed

        scheduling = client.SchedulingV1Api(config.new_client_from_config(config_file=self.env["KUBECONFIG"]))
        present = {item.metadata.name for item in scheduling.list_priority_class().items}
        self._baseline_kept = any(tier.priority_class_name in present for tier in tiers_placed(Placement.SHARED))
        self.stack_operations().up(BASELINE_STACK, UpdateMetadata("control-plane-tests", "shared baseline"),
                                   config=baseline_config(TenantPlatform.from_env(self.env)), create=True, refresh=True)

    def clusters_cli(self, *args: str) -> str:
        """`cameleer-clusters <args>` against this plane's registry; its standard output."""
        done = subprocess.run([sys.executable, "-m", "api.clusters.cli", *args], env=self.env, cwd=REPO_ROOT,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(f"cameleer-clusters {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def _spawn(self, name: str, args: list[str], extra: Mapping[str, str] | None = None) -> subprocess.Popen:
        log_path = self.root / "logs" / f"{name}-{len(self._logs)}.log"
        self._logs.append(log_path)
        with open(log_path, "ab") as log:
            # A session of its own: killing the group kills the worker, as when a machine or
            # container dies; its engine processes (each in a session of their own) die with it
            # (automation/processes.py).
            return subprocess.Popen([PYTHON, *args], cwd=REPO_ROOT, env={**self.env, **(extra or {})},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.api.poll() is not None:
                    raise HarnessError(f"the API exited with {self.api.returncode}:\n{self.logs()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise HarnessError(f"the API was not ready within {timeout:g}s:\n{self.logs()}")

    def start_worker(self, **extra: str) -> subprocess.Popen:
        worker = self._spawn("worker", ["-m", "api.worker"], extra)
        self.workers.append(worker)
        return worker

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the process's group; its engine processes die with it (automation/processes.py)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        _wait_group_gone(proc.pid)
        if proc in self.workers:
            self.workers.remove(proc)

    def stop(self, proc: subprocess.Popen, timeout: float = 120) -> None:
        """SIGTERM (a worker finishes its job first), SIGKILL after `timeout`."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill(proc)

    def stop_workers(self) -> None:
        for worker in list(self.workers):
            self.stop(worker)

    def close(self, parallel: int = 1) -> list[str]:
        """Stop everything, destroy and remove what is left (`parallel` stacks at a time);
        returns the problems met."""
        problems: list[str] = []
        for worker in list(self.workers):
            self.kill(worker)
        if self.api is not None:
            self.stop(self.api, timeout=20)
            self.api = None
        if self._baseline_kept:
            try:
                self.pulumi("stack", "rm", "--force", "--yes", "--preserve-config", "--stack", BASELINE_STACK)
            except HarnessError as exc:
                problems.append(f"removing the baseline stack that kept another's objects: {exc}")
            self._baseline_kept = False
        if self.env:
            problems += self._destroy_leftovers(parallel)
        try:
            vault_support.remove_tenant_secrets(self.slugs)
        except Exception as exc:  # noqa: BLE001 - report, clean up the rest
            problems.append(f"removing the tenants' secrets: {exc}")
        for slug in self.slugs:
            for name in (f"tenant-{slug}", f"dedicated-{slug}"):
                path = REPO_ROOT / "stacks" / "config" / f"Pulumi.{name}.yaml"
                if path.exists():
                    path.unlink()
        if self.db is not None:
            drop_database(self.db)
            self.db = None
        return problems

    def _destroy_leftovers(self, parallel: int) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        from automation.history import UpdateMetadata

        problems = []
        ops = self.stack_operations()
        try:
            names = ops.stack_names()
        except Exception as exc:  # noqa: BLE001 - report, go on with the namespaces
            return [f"listing the private backend's stacks: {exc}"]

        def destroy(name: str) -> str | None:
            try:
                ops.destroy(name, UpdateMetadata("control-plane-tests", "clean up after the engine tests"))
            except Exception as exc:  # noqa: BLE001 - clean up the others
                return f"destroying {name}: {exc}"
            return None

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            problems += [problem for problem in pool.map(destroy, names) if problem]
        from kubernetes import client, config

        for cluster in self.clusters or [RegisteredCluster("eu1", "shared", self.env["KUBECONFIG"])]:
            core = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
            for slug in self.slugs:
                for namespace in core.list_namespace(label_selector=f"cameleer.io/tenant={slug}").items:
                    if namespace.status.phase != "Terminating":
                        core.delete_namespace(namespace.metadata.name)
                        problems.append(f"namespace {namespace.metadata.name} on {cluster.name} survived its stack; "
                                        "deleted it")
        return problems

    # -- the engine side, as the workers see it --------------------------------------

    def stack_operations(self):
        from automation.operations import StackOperations
        from automation.settings import Settings

        return StackOperations(Settings.from_env(self.env))

    def pulumi(self, *args: str) -> subprocess.CompletedProcess:
        """The bare CLI on the private backend, in the project (as an operator runs it)."""
        result = subprocess.run([str(pulumi_root() / "bin" / "pulumi"), *args], cwd=REPO_ROOT, env=self.env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise HarnessError(f"pulumi {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def stack_list(self) -> list[str]:
        return sorted(item["name"].rsplit("/", 1)[-1] for item in json.loads(self.pulumi("stack", "ls", "--json").stdout))

    # -- the platform database ---------------------------------------------------------

    @contextmanager
    def sql(self) -> Iterator[psycopg.Connection]:
        """The throwaway platform DB as its superuser (no RLS): for assertions only."""
        from api.settings import libpq_dsn

        with psycopg.connect(libpq_dsn(self.db.url(self.db.admin)), autocommit=True) as conn:
            yield conn

    def scalar(self, query: str, *params: Any) -> Any:
        with self.sql() as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

    def row(self, query: str, *params: Any) -> tuple | None:
        with self.sql() as conn:
            return conn.execute(query, params).fetchone()

    def tenant_schemas(self, slug: str) -> list[str]:
        """The tenant's schemas in the tenant database."""
        pattern = f"tenant\\_{slug.replace('-', '_')}\\_%"
        with psycopg.connect(self.tenant_database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", (pattern,))
            return [name for (name,) in rows]

    def platform_account(self, role: str) -> str:
        """A new platform user (auditor, operator); answers its email (the password is STRONG_PASSWORD)."""
        from api.auth.roles import PlatformRole
        from api.auth.users import create_user
        from api.db.session import Database, Scope

        email = f"{role}-{uuid.uuid4().hex[:8]}@platform.example.com"
        database = Database(self.db.url(self.db.app), self.db.url(self.db.system))
        try:
            with database.transaction(Scope.system()) as session:
                create_user(session, email, STRONG_PASSWORD, platform_role=PlatformRole(role))
        finally:
            database.dispose()
        return email

    def platform_user(self, role: str) -> dict[str, str]:
        """Headers of a new platform user (auditor, operator)."""
        return self.login(self.platform_account(role))

    # -- the HTTP API -------------------------------------------------------------------

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def unique_slug(self, prefix: str = "cp") -> str:
        slug = f"{prefix}{uuid.uuid4().hex[:8]}"
        self.slugs.append(slug)
        return slug

    @staticmethod
    def signup_body(slug: str, tier: str = "low") -> dict[str, str]:
        return {"organization_name": f"Org {slug}", "slug": slug, "owner_email": f"owner@{slug}.example.com",
                "owner_password": STRONG_PASSWORD, "tier": tier}

    def request_signup(self, slug: str, tier: str = "low", key: str | None = None) -> httpx.Response:
        """POST /v1/signup alone: the owner is mailed a link, nothing is created yet."""
        with self.client() as client:
            return client.post("/v1/signup", json=self.signup_body(slug, tier),
                               headers={"Idempotency-Key": key or uuid.uuid4().hex})

    def signup(self, slug: str, tier: str = "low", key: str | None = None) -> httpx.Response:
        """Sign up and follow the mailed link, as the owner does: the verification's answer (the
        tenant and its signup operation), or the signup's own when it was refused."""
        requested = self.request_signup(slug, tier, key)
        if requested.status_code != 202:
            return requested
        with self.client() as client:
            return client.post("/v1/signup/verify",
                               json={"token": self.verification_token(self.signup_body(slug)["owner_email"])})

    def verification_token(self, email: str) -> str:
        """The token of the latest verification link the API mailed to ``email`` (its local outbox)."""
        from api.mail import read_maildir

        for message in reversed(read_maildir(Path(self.env["CAMELEER_DATA_DIR"]) / "outbox")):
            found = re.search(r"#token=([A-Za-z0-9_-]+)", message.get_payload(decode=True).decode())
            if message["To"] == email and found:
                return found.group(1)
        raise HarnessError(f"no verification link was mailed to {email}")

    def login(self, email: str, password: str = STRONG_PASSWORD) -> dict[str, str]:
        with self.client() as client:
            response = client.post("/v1/auth/login", json={"email": email, "password": password})
        if response.status_code != 200:
            raise HarnessError(f"login of {email} failed: {response.status_code} {response.text}")
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def operation(self, operation_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/v1/operations/{operation_id}", headers=dict(headers))
        if response.status_code != 200:
            raise HarnessError(f"GET operation {operation_id}: {response.status_code} {response.text}")
        return response.json()

    def wait_operation(self, operation_id: str, headers: Mapping[str, str], timeout: float = 300,
                       poll: float = 0.5) -> dict[str, Any]:
        """Poll GET /v1/operations/{id} until it is finished (SUCCEEDED or FAILED)."""
        deadline = time.monotonic() + timeout
        while True:
            operation = self.operation(operation_id, headers)
            if operation["status"] in ("SUCCEEDED", "FAILED"):
                return operation
            if time.monotonic() >= deadline:
                raise HarnessError(f"operation {operation_id} still {operation['status']} after {timeout:g}s "
                                   f"(step {operation['current_step']}):\n{self.logs()}")
            time.sleep(poll)

    def logs(self, lines: int = 40) -> str:
        parts = []
        for path in self._logs:
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _wait_group_gone(pgid: int, timeout: float = 30) -> None:
    """SIGKILL is asynchronous: wait until no live process of the group is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return
        time.sleep(0.05)
    raise HarnessError(f"process group {pgid} survived SIGKILL: {group_members(pgid)}")
