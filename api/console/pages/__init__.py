"""One router per console area."""

from api.console.pages import auth, drift, history, tenants

PAGE_ROUTERS = (auth.router, tenants.router, history.router, drift.router)
