"""One router per console area."""

from api.console.pages import auth, drift, history, operations, tenants

PAGE_ROUTERS = (auth.router, tenants.router, history.router, operations.router, drift.router)
