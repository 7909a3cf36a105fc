"""One router per console area."""

from api.console.pages import audit, auth, clusters, drift, history, links, operations, tenants

PAGE_ROUTERS = (auth.router, links.router, tenants.router, history.router, operations.router, drift.router,
                audit.router, clusters.router)
