"""One router per console area."""

from api.console.pages import auth, history, tenants

PAGE_ROUTERS = (auth.router, tenants.router, history.router)
