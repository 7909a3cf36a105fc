"""Liveness and readiness probes."""

from __future__ import annotations

import hvac
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.db.schema_state import MIGRATE_HINT, schema_state
from api.dependencies import ServicesDep
from api.problems import problem_response, problems

router = APIRouter(tags=["service"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database is reachable and migrated, the secrets server unsealed",
            responses={200: {"description": "Ready: the schema's revisions and the secrets server's state"},
                       **problems({503: "`/problems/not-ready`: `detail` says what is missing"})})
def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    try:
        with services.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        state = schema_state(services.db.engine)
    except Exception as exc:  # any failure to reach the DB means "not ready"
        return problem_response(request, 503, "not-ready", "Service Unavailable", f"database unreachable: {type(exc).__name__}")
    if not state.migrated:
        return problem_response(request, 503, "not-ready", "Service Unavailable", f"{state.describe()}; {MIGRATE_HINT}")
    secrets = secrets_server_state(services.settings.vault_addr)
    if secrets not in ("unsealed", "not configured"):
        return problem_response(request, 503, "not-ready", "Service Unavailable", f"the secrets server is {secrets}")
    return JSONResponse({"status": "ready", "schema": sorted(state.current), "secrets": secrets})


def secrets_server_state(address: str | None) -> str:
    """`unsealed`, `sealed`, `unreachable` or `not configured` (no token needed to ask)."""
    if not address:
        return "not configured"
    try:
        return "sealed" if hvac.Client(url=address, timeout=3).sys.is_sealed() else "unsealed"
    except Exception:  # noqa: BLE001 - connection refused, timeout, a proxy's HTML: all "unreachable"
        return "unreachable"
