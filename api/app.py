"""The control-plane HTTP service: ``create_app()`` builds it, ``python -m api`` serves it."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import health, metrics
from api.audit.router import router as audit_router
from api.auth.password_router import router as password_router
from api.auth.router import router as auth_router
from api.billing.router import router as billing_router
from api.billing.usage_router import router as usage_router
from api.clusters.router import router as clusters_router
from api.console import install_console
from api.drift.router import router as drift_router
from api.db.schema_state import DatabaseNotMigrated, ensure_migrated, rls_bypassed_by_role
from api.licensing.router import router as license_router
from api.licensing.server_route import ServerLicenseRoute
from api.logs import configure_logging
from api.middleware import install_middleware
from api.openapi import install_openapi
from api.operations.router import router as operations_router
from api.problems import install_problem_handlers, problem_response
from api.server_credential.router import router as server_credential_router
from api.services import Services
from api.settings import ServiceNotConfigured, Settings, get_settings
from api.tenants.members_router import router as members_router
from api.tenants.router import router as tenants_router
from api.vault import SecretsUnavailable

log = logging.getLogger(__name__)

DESCRIPTION = """
Signup, tenant lifecycle, licensing and audit of the Cameleer SaaS platform.
Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            ensure_migrated(services.db.engine)
        except DatabaseNotMigrated as exc:
            log.critical(str(exc))
            raise
        _warn_if_rls_is_bypassed(services)
        await services.db.async_system_reads.open()
        try:
            yield
        finally:
            await services.db.async_system_reads.close()
            services.db.dispose()

    app = FastAPI(title="Cameleer control plane", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    install_problem_handlers(app)
    app.add_exception_handler(SecretsUnavailable, _secrets_unavailable)
    install_middleware(app)
    for router in (health.router, metrics.router, auth_router, password_router, tenants_router, members_router,
                   operations_router, license_router, audit_router, billing_router, usage_router,
                   server_credential_router, drift_router, clusters_router):
        app.include_router(router)
    # First in the router: it takes only the tenant servers' license polls (the server key header).
    app.router.routes.insert(0, ServerLicenseRoute(services))
    install_console(app)
    install_openapi(app)
    return app


async def _secrets_unavailable(request: Request, exc: SecretsUnavailable) -> JSONResponse:
    log.warning("secrets server unavailable: %s", exc)
    return problem_response(request, 503, exc.problem, "Service Unavailable", str(exc),
                            {"Retry-After": str(exc.retry_after)})


def _warn_if_rls_is_bypassed(services: Services) -> None:
    role = rls_bypassed_by_role(services.db.engine)
    if role:
        log.warning(
            "connected as %s, a superuser or BYPASSRLS role: row-level security is NOT enforced; "
            "use a plain app role in CAMELEER_DATABASE_URL", role
        )


def main() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except ServiceNotConfigured as exc:
        sys.exit(f"error: {exc}")
    # The app and the modules behind it (about 200,000 objects) live as long as the process: out
    # of the collector's full passes, which take about 100 ms over them and would show in the tail
    # latency of whichever requests they interrupt.
    gc.freeze()
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None)
