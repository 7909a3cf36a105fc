"""What the benchmarks share: percentiles, and one real API process on a throwaway database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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
