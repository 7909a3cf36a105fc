"""One router per console area."""

from api.console.pages import auth, tenants

PAGE_ROUTERS = (auth.router, tenants.router)
