"""Fixtures for tests that run the real engine against the local services.

The services come from `scripts/services.sh start` (run by `scripts/test.sh`), which writes
their settings into the environment. A missing tool or service fails these tests; it never
skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping

import pytest

from tests.conftest import require_env

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture(scope="session")
def pulumi_bin() -> Path:
    found = shutil.which("pulumi")
    if not found:
        pytest.fail("the pulumi CLI is not on PATH: scripts/toolchain.sh builds it into .venv/bin")
    return Path(found)


@pytest.fixture(scope="session")
def cluster_kubeconfigs(kubeconfig) -> dict[str, str]:
    """Each local cluster's kubeconfig file by name, as services.env lists them
    (CAMELEER_LOCAL_CLUSTERS; only the platform's own when a services.env of before the extra
    clusters leaves it unset): the platform's own cluster's is KUBECONFIG, every other's
    CAMELEER_KUBECONFIG_<NAME>."""
    from stacks.clusters import DEFAULT_LOCAL_CLUSTER, kubeconfig_variable

    files = {}
    for cluster in os.environ.get("CAMELEER_LOCAL_CLUSTERS", DEFAULT_LOCAL_CLUSTER).split():
        path = kubeconfig if cluster == DEFAULT_LOCAL_CLUSTER else require_env(kubeconfig_variable(cluster))
        if not Path(path).exists():
            pytest.fail(f"the kubeconfig {path} of cluster {cluster} does not exist: scripts/services.sh start writes it")
        files[cluster] = path
    return files


@pytest.fixture(scope="session")
def kube_core(kubeconfig):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


@pytest.fixture(scope="session")
def state_postgres_url() -> str:
    return require_env("CAMELEER_STATE_POSTGRES_URL")


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def pulumi_home() -> str:
    """The project's PULUMI_HOME: the one scripts/toolchain.sh installed the kubernetes
    provider plugin into (tests keep their own backends and passphrases)."""
    path = require_env("PULUMI_HOME")
    if not list(Path(path).glob("plugins/resource-kubernetes-v*")):
        pytest.fail(f"no kubernetes provider plugin in PULUMI_HOME {path}: scripts/toolchain.sh installs it")
    return path


@pytest.fixture
def engine_env(tmp_path, kubeconfig, pulumi_bin, pulumi_home) -> dict[str, str]:
    """Environment for one test's engine runs: its own passphrase (backends are per test)."""
    return {
        "KUBECONFIG": kubeconfig,
        "PULUMI_HOME": pulumi_home,
        "PULUMI_CONFIG_PASSPHRASE": "integration-test-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PATH": f"{pulumi_bin.parent}:{os.environ['PATH']}",
    }


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> str:
    return require_env("CAMELEER_POSTGRES_ADMIN_DSN")


@pytest.fixture(scope="session")
def tenant_database_url(postgres_admin_dsn) -> Iterator[str]:
    """Admin URL of a throwaway database for this session's tenant stacks, as the platform has
    it: a CREATEROLE-only role (no superuser) owning the database, like the local
    `cameleer_provisioner`. Dropped at the end together with every tenant role the session's
    stacks created (roles are cluster-wide)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    suffix = uuid.uuid4().hex[:10]
    database, provisioner = f"cameleer_it_{suffix}", sql.Identifier(f"cameleer_it_provisioner_{suffix}")
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE NOSUPERUSER NOCREATEDB").format(provisioner))
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(provisioner))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), provisioner))
    yield make_conninfo(postgres_admin_dsn, dbname=database, user=f"cameleer_it_provisioner_{suffix}")
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        for slug in _SESSION_SLUGS:
            roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                 (f"tenant\\_{slug.replace('-', '_')}\\_%",)).fetchall()
            for (role,) in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(provisioner))


def pg_schema_and_role(admin_url: str, identifier: str) -> tuple[str | None, bool]:
    """(owner of schema `identifier` or None if there is none, whether role `identifier` exists)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                             (identifier,)).fetchone()
        role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (identifier,)).fetchone()
    return (owner[0] if owner else None), role is not None


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="session")
def kube_api_client(kubeconfig):
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def kube(kube_api_client) -> SimpleNamespace:
    """Typed clients for the APIs the stacks write to."""
    return kube_clients(kube_api_client)


def kube_clients(api_client) -> SimpleNamespace:
    """Typed clients of one cluster's APIs the stacks write to."""
    from kubernetes import client

    return SimpleNamespace(
        core=client.CoreV1Api(api_client),
        apps=client.AppsV1Api(api_client),
        networking=client.NetworkingV1Api(api_client),
        rbac=client.RbacAuthorizationV1Api(api_client),
        scheduling=client.SchedulingV1Api(api_client),
    )


def kube_missing(read: Callable[..., Any], *args: Any) -> bool:
    """Whether reading the object answers 404 (any other error propagates)."""
    from kubernetes.client.exceptions import ApiException

    try:
        read(*args)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


# --------------------------------------------------------------------------- the project's stacks

PINNED_IMAGE = "ghcr.io/cameleer/server@sha256:" + "4f5e1c3b2a9d8e7f" * 4
_SESSION_SLUGS: list[str] = []


def license_jwt(slug: str, tier_name: str) -> str:
    """A license as the control plane issues it (Ed25519 JWT, claims from the catalog), signed
    with a throwaway key: the stacks only mount it."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from api.auth.jws import sign
    from components.catalog import get_tier

    tier = get_tier(tier_name)
    now = int(time.time())
    claims = {"iss": "cameleer-integration-tests", "aud": "cameleer-server", "sub": slug,
              "tenant_slug": slug, "tier": tier.name, "features": tier.features.as_claims(),
              "limits": tier.limits.as_claims(), "status": "active", "iat": now, "nbf": now,
              "exp": now + 3600}
    return sign(claims, "license-throwaway", Ed25519PrivateKey.generate(), typ="cameleer-license+jwt")


class Secret(str):
    """A config value to store with `secret=True`."""


def _config_json(values: Mapping[str, Any]) -> str:
    """`values` (keys without the `cameleer:` namespace) for `pulumi config set-all --json`."""
    entries = {}
    for key, value in values.items():
        entry: dict[str, Any] = {"secret": isinstance(value, Secret)}
        if isinstance(value, (list, dict)):
            entry.update(value=json.dumps(value), objectValue=value)
        elif isinstance(value, bool):
            entry["value"] = "true" if value else "false"
        else:
            entry["value"] = str(value)
        entries[f"cameleer:{key}"] = entry
    return json.dumps(entries)


class ProjectStack:
    """A stack of the project's own program (Pulumi.yaml at the repo root, `main: stacks/`)
    through the Automation API, with a private file backend and its settings file in the
    test's tmp directory instead of the repo's stacks/config.

    `pulumi stack init` writes the passphrase provider's salt into the project's stack config
    dir; the file is moved out at once and every later command gets `--config-file`.
    Each operation's engine events are kept in `events` (the last operation's)."""

    def __init__(self, name: str, tmp_path: Path, env: Mapping[str, str], work_dir: Path = REPO_ROOT):
        import yaml
        from pulumi import automation as auto

        self.name = name
        self.work_dir = work_dir
        self.config_file = tmp_path / f"Pulumi.{name}.yaml"
        project = yaml.safe_load((work_dir / "Pulumi.yaml").read_text())
        self.repo_config_file = work_dir / project.get("stackConfigDir", ".") / f"Pulumi.{name}.yaml"
        if self.repo_config_file.exists():
            pytest.fail(f"{self.repo_config_file} exists already; the test stack names must be unique")
        self.env = dict(env)
        self.stack = auto.create_stack(name, work_dir=str(work_dir),
                                       opts=auto.LocalWorkspaceOptions(env_vars=self.env))
        try:
            shutil.move(self.repo_config_file, self.config_file)
        finally:
            self.repo_config_file.unlink(missing_ok=True)
        self.events: list = []
        self.output: list[str] = []

    def set_config(self, **values: Any) -> None:
        command = ["config", "set-all", "--stack", self.name, "--config-file", str(self.config_file),
                   "--json", _config_json(values)]
        self.stack.workspace.pulumi_command.run(command, str(self.work_dir), {**os.environ, **self.env})

    def _run(self, operation: str, **kwargs: Any):
        self.events, self.output = [], []
        return getattr(self.stack, operation)(config_file=str(self.config_file), on_event=self.events.append,
                                              on_output=self.output.append, **kwargs)

    def preview(self, **kwargs: Any):
        return self._run("preview", **kwargs)

    def up(self, **kwargs: Any):
        return self._run("up", **kwargs)

    def destroy(self, **kwargs: Any):
        return self._run("destroy", **kwargs)

    def steps(self) -> dict[str, Any]:
        """The last operation's steps by resource name (ResourcePreEvent metadata)."""
        return {event.resource_pre_event.metadata.urn.rsplit("::", 1)[1]: event.resource_pre_event.metadata
                for event in self.events if event.resource_pre_event is not None}

    def policy_events(self) -> list:
        return [event.policy_event for event in self.events if event.policy_event is not None]

    def resource_count(self) -> int:
        # The state as stored (the SDK's export_stack would decrypt secrets, needing the salt).
        result = self.stack.workspace.pulumi_command.run(
            ["stack", "export", "--stack", self.name], str(self.work_dir), {**os.environ, **self.env})
        return len(json.loads(result.stdout).get("deployment", {}).get("resources") or [])

    def close(self) -> None:
        """Destroy what is left, remove the stack; never leave a settings file in the repo."""
        try:
            if self.resource_count():
                self.destroy()
            self.stack.workspace.remove_stack(self.name)
        finally:
            self.repo_config_file.unlink(missing_ok=True)


@pytest.fixture
def project_stacks(tmp_path, engine_env, tenant_database_url, kube,
                   shared_baseline) -> Iterator[Callable[..., ProjectStack]]:
    """`new(kind, slug=None, work_dir=REPO_ROOT)` -> a ProjectStack `<kind>-<slug>` (a unique
    slug by default) of the program in `work_dir`, with a private file backend; all of them are destroyed and removed after the test, and
    any tenant namespace a failed destroy left behind is deleted."""
    state = tmp_path / "state"
    state.mkdir()
    env = {**engine_env, "PULUMI_BACKEND_URL": f"file://{state}",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
    created: list[tuple[ProjectStack, str]] = []

    def new(kind: str, slug: str | None = None, work_dir: Path = REPO_ROOT) -> ProjectStack:
        slug = slug or f"it{uuid.uuid4().hex[:8]}"
        _SESSION_SLUGS.append(slug)
        stack = ProjectStack(f"{kind}-{slug}", tmp_path, env, work_dir)
        created.append((stack, slug))
        return stack

    yield new
    failures = []
    for stack, slug in reversed(created):
        try:
            stack.close()
        except Exception as error:  # noqa: BLE001 - clean up the others, then fail
            failures.append(f"{stack.name}: {error}")
        for namespace in kube.core.list_namespace(label_selector=f"cameleer.io/tenant={slug}").items:
            kube.core.delete_namespace(namespace.metadata.name)
            failures.append(f"{stack.name}: namespace {namespace.metadata.name} survived; deleted it")
    if failures:
        pytest.fail("cleanup of the project's stacks failed:\n" + "\n".join(failures))


class SharedBaseline:
    """The local cluster's baseline, brought up once per session as a `shared-<unique>` stack of
    the project's program: the platform namespace and the shared tiers' PriorityClasses, which
    every tenant pod names. Objects that were there before the session (the demo's shared-eu1)
    are left in place at the end; otherwise the stack is destroyed."""

    def __init__(self, stack: ProjectStack, kube, existed: bool):
        self.stack, self.kube, self.existed = stack, kube, existed

    def restore(self) -> None:
        """Bring back what a test deleted (a dedicated stack shares the platform namespace)."""
        result = self.stack.up(refresh=True)
        assert result.summary.result == "succeeded"

    def close(self) -> None:
        if self.existed:
            self.stack.stack.workspace.pulumi_command.run(
                ["stack", "rm", "--force", "--yes", "--preserve-config", "--stack", self.stack.name],
                str(self.stack.work_dir), {**os.environ, **self.stack.env})
            self.stack.repo_config_file.unlink(missing_ok=True)
        else:
            self.stack.close()


@pytest.fixture(scope="session")
def shared_baseline(tmp_path_factory, kubeconfig, pulumi_bin, pulumi_home, kube) -> Iterator[SharedBaseline]:
    from components.catalog import Placement, tiers_placed

    tmp_path = tmp_path_factory.mktemp("shared-baseline")
    state = tmp_path / "state"
    state.mkdir()
    env = {"KUBECONFIG": kubeconfig, "PULUMI_HOME": pulumi_home,
           "PULUMI_CONFIG_PASSPHRASE": "integration-test-passphrase", "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PATH": f"{pulumi_bin.parent}:{os.environ['PATH']}", "PULUMI_BACKEND_URL": f"file://{state}",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
           # The baseline stack is named after a unique cluster; it is the local one.
           "CAMELEER_KUBECONFIG_" + "IT" + uuid.uuid4().hex[:6].upper(): kubeconfig}
    cluster = next(key for key in env if key.startswith("CAMELEER_KUBECONFIG_"))[len("CAMELEER_KUBECONFIG_"):]
    existed = any(not kube_missing(kube.scheduling.read_priority_class, tier.priority_class_name)
                  for tier in tiers_placed(Placement.SHARED))
    baseline = SharedBaseline(ProjectStack(f"shared-{cluster.lower()}", tmp_path, env), kube, existed)
    try:
        baseline.restore()
        yield baseline
    finally:
        baseline.close()


def tenant_config(slug: str, tier: str, environments: list[str], admin_url: str, **extra: Any) -> dict[str, Any]:
    """A complete `cameleer:` configuration of a tenant or dedicated stack on the local services."""
    from psycopg.conninfo import conninfo_to_dict

    database = conninfo_to_dict(admin_url)
    return {
        "slug": slug,
        "tier": tier,
        "environments": environments,
        "image": PINNED_IMAGE,
        "databaseEndpoint": f"{database.get('host', '127.0.0.1')}:{database.get('port', 5432)}",
        "suspended": False,
        # A rollout that cannot finish fails the update in this long, not in five minutes.
        "rolloutTimeout": "90s",
        "databaseAdminUrl": Secret(admin_url),
        "license": Secret(license_jwt(slug, tier)),
        **extra,
    }
