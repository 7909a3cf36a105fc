"""Fixtures every test package may use: the local cluster, through its kubeconfig and kubectl.

The services come from `scripts/services.sh start` (run by `scripts/test.sh`), which writes
their settings into the environment. A missing one fails the test; it never skips it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite through scripts/test.sh, which starts the local services")
    return value


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = require_env("KUBECONFIG")
    if not Path(path).exists():
        pytest.fail(f"KUBECONFIG {path} does not exist: scripts/services.sh start writes it")
    return path


@pytest.fixture(scope="session")
def kubectl(kubeconfig):
    """`kubectl(*args)` against the local cluster; returns stdout, fails the test on an error."""
    def run(*args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    return run
