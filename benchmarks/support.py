"""What the benchmarks share: percentiles, a throwaway platform database, and one real API process on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.migrate import upgrade  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.api.database import TestDatabase, create_database, drop_database  # noqa: E402
from tests.integration.control_plane import free_port  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(-(-len(ordered) * fraction // 1)) - 1)]


def start_api(db_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`python -m api` on a free loopback port with these settings; answers it once ready."""
    port = free_port()
    env = {**os.environ, **db_env, "CAMELEER_HTTP_HOST": "127.0.0.1", "CAMELEER_HTTP_PORT": str(port),
           "CAMELEER_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "api"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the API did not become ready within 60 s")


@contextmanager
def throwaway_database(prefix: str) -> Iterator[TestDatabase]:
    """A migrated platform database with its three roles, dropped at the end."""
    db = create_database(prefix)
    try:
        upgrade(url=db.url(db.owner), app_role=db.app_role, system_role=db.system_role)
        yield db
    finally:
        drop_database(db)


def database_env(db: TestDatabase) -> dict[str, str]:
    """The settings an API process needs to use ``db``, as environment variables."""
    return {"CAMELEER_DATABASE_URL": db.url(db.app), "CAMELEER_DATABASE_ADMIN_URL": db.url(db.owner),
            "CAMELEER_DATABASE_APP_ROLE": db.app_role, "CAMELEER_DATABASE_SYSTEM_URL": db.url(db.system),
            "CAMELEER_DATABASE_SYSTEM_ROLE": db.system_role}


def database_settings(db: TestDatabase, **extra) -> Settings:
    """This process's settings for ``db`` (and ``extra``), as the API process gets them."""
    return Settings(database_url=SecretStr(db.url(db.app)), database_admin_url=SecretStr(db.url(db.owner)),
                    database_app_role=db.app_role, database_system_url=SecretStr(db.url(db.system)),
                    database_system_role=db.system_role, **extra)
