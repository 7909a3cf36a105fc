"""A token for tenant A can neither read nor change tenant B, on EVERY tenant-scoped route.

The cases are generated from the FastAPI route table: every route whose dependencies
include a tenant-scoped access check, and every route with a tenant or operation path
parameter (which must then have such a check). The console's pages (``/console``) take no
bearer token: they check the signed-in viewer with the same rule in the handler
(api/console/access.py), which tests/api/test_console*.py cover.
"""

from __future__ import annotations

import jwt
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.app import create_app
from api.auth.dependencies import OperationAccess, TenantAccess
from api.settings import Settings
from tests.api.conftest import sign_up

SCOPED_PARAMS = {"tenant_id", "operation_id"}
CONSOLE = "/console/"


def _access_checks(dependant: Dependant) -> list:
    found = [d.call for d in dependant.dependencies if isinstance(d.call, TenantAccess | OperationAccess)]
    for sub in dependant.dependencies:
        found += _access_checks(sub)
    return found


def _routes() -> list[tuple[str, str]]:
    app = create_app(Settings(database_url="postgresql+psycopg://unused@127.0.0.1:1/unused"))
    cases = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path.startswith(CONSOLE):
            continue
        scoped = bool(_access_checks(route.dependant)) or bool(SCOPED_PARAMS & set(route.param_convertors))
        if scoped:
            cases += [(method, route.path) for method in sorted(route.methods)]
    return cases


ROUTES = _routes()


def test_route_table_has_tenant_scoped_routes():
    # Guards against the generator silently finding nothing.
    assert len(ROUTES) >= 12


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_scoped_route_declares_an_access_check(method, path):
    app = create_app(Settings(database_url="postgresql+psycopg://unused@127.0.0.1:1/unused"))
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == path and method in r.methods)
    assert _access_checks(route.dependant), f"{method} {path} has a tenant/operation parameter but no access check"


@pytest.fixture
def two_tenants(client, services):
    return sign_up(client, services), sign_up(client, services)


BODIES = {
    "/v1/tenants/{tenant_id}/tier": {"tier": "mid"},
    "/v1/tenants/{tenant_id}/invitations": {"email": "intruder@example.com", "role": "owner"},
    "/v1/tenants/{tenant_id}/members/{user_id}": {"role": "viewer"},
}


def _user_id(headers: dict[str, str]) -> str:
    return jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})["sub"]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_token_of_tenant_a_cannot_touch_tenant_b(client, two_tenants, method, path):
    a, b = two_tenants
    url = path.format(tenant_id=b.tenant_id, operation_id=b.operation_id, user_id=_user_id(b.headers))
    before = client.get(f"/v1/tenants/{b.tenant_id}", headers=b.headers).json()
    members_before = client.get(f"/v1/tenants/{b.tenant_id}/members", headers=b.headers).json()
    operations_before = client.get(f"/v1/tenants/{b.tenant_id}/operations", headers=b.headers).json()

    response = client.request(method, url, headers=a.headers, json=BODIES.get(path))

    assert response.status_code in (403, 404), f"{method} {url}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) <= {"type", "title", "status", "detail", "instance"}  # nothing of B's data
    assert b.slug not in response.text and b.email not in response.text
    assert client.get(f"/v1/tenants/{b.tenant_id}", headers=b.headers).json() == before
    assert client.get(f"/v1/tenants/{b.tenant_id}/operations", headers=b.headers).json() == operations_before
    assert client.get(f"/v1/tenants/{b.tenant_id}/members", headers=b.headers).json() == members_before


def test_owner_of_b_can_use_the_same_routes(client, two_tenants):
    """The refusal above is about the tenant, not a broken route: B's owner gets through."""
    _, b = two_tenants
    assert client.get(f"/v1/tenants/{b.tenant_id}", headers=b.headers).status_code == 200
    assert client.get(f"/api/license/{b.tenant_id}", headers=b.headers).status_code == 200
    assert client.get(f"/v1/operations/{b.operation_id}", headers=b.headers).status_code == 200
