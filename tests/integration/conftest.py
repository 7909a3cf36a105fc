"""Fixtures for tests that run the real engine against the local services.

The services come from `scripts/services.sh start` (run by `scripts/test.sh`), which writes
their settings into the environment. A missing tool or service fails these tests; it never
skips them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).parent / "programs"


def _require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite through scripts/test.sh, which starts the local services")
    return value


@pytest.fixture(scope="session")
def pulumi_bin() -> Path:
    found = shutil.which("pulumi")
    if not found:
        pytest.fail("the pulumi CLI is not on PATH: scripts/toolchain.sh builds it into .venv/bin")
    return Path(found)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = _require_env("KUBECONFIG")
    if not Path(path).exists():
        pytest.fail(f"KUBECONFIG {path} does not exist: scripts/services.sh start writes it")
    return path


@pytest.fixture(scope="session")
def kube_core(kubeconfig):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


@pytest.fixture(scope="session")
def state_postgres_url() -> str:
    return _require_env("CAMELEER_STATE_POSTGRES_URL")


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def engine_env(tmp_path, kubeconfig, pulumi_bin) -> dict[str, str]:
    """Environment for one test's engine runs: its own PULUMI_HOME and passphrase."""
    return {
        "KUBECONFIG": kubeconfig,
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_CONFIG_PASSPHRASE": "integration-test-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PATH": f"{pulumi_bin.parent}:{os.environ['PATH']}",
    }
