"""Property-based contract test: every operation of the OpenAPI document, fuzzed by
schemathesis against the app (a throw-away database, the fake engine, the local OpenBao and
stripe-mock), anonymously and as an operator and a tenant owner. Every answer must be one the
document describes (status, content type, body, headers, `Allow` of a 405), data the document
forbids must be refused, and no answer may be a 5xx."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import sessions
from api.auth.roles import PlatformRole
from api.auth.users import create_user, find_user
from api.db.session import Scope
from api.services import Services
from tests.api.conftest import STRONG_PASSWORD, new_address, sign_up

# The clusters whose real kubeconfigs the local OpenBao holds (platform/clusters/<name>) for the
# engine and the other tests: a generated case that would register or remove one is dropped.
REAL_CLUSTERS = frozenset((os.environ.get("CAMELEER_LOCAL_CLUSTERS") or "eu1 eu2 dc1").split()) | {"eu1"}

# Bounded: the file runs in about 3 minutes on 2 shared cores. Deterministic, so a failure
# shows again on the next run. The coverage phase adds its boundary cases (a value one shorter
# than a minimum, a missing required header, an undocumented method, ...) to the fuzzed ones.
CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": 5, "deterministic": True},
    "checks": {
        # Every other check runs. This one expects any schema-valid request to succeed, but the
        # server also applies rules no JSON Schema can state, each answered with its own problem
        # type that the document lists: a link token must exist (400 `/problems/invalid-link`,
        # 410), a webhook's signature must verify, a password needs 5 different characters and an
        # email a domain that is not reserved (`.test`, ...).
        "positive_data_acceptance": {"enabled": False},
    },
})


@dataclass
class Identity:
    """Who calls, and the resources that are theirs: a case whose path names a well-formed id
    names one of these in about half of the examples, so that the answers of existing resources
    are checked too, not only 404s."""

    name: str
    email: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    own: dict[str, str] = field(default_factory=dict)  # path parameter -> an id of an existing resource


def _signed_in(services: Services, email: str) -> dict[str, str]:
    """A fresh session, as a login would start it (the fuzzed logins and password changes may
    have locked the account's and the address's logins by then)."""
    with services.db.transaction(Scope.system()) as db:
        started = sessions.start(db, services, find_user(db, email))
    return {"Authorization": f"Bearer {started.access.token}"}


def _user_id(services: Services, email: str) -> str:
    with services.db.transaction(Scope.system()) as db:
        return str(find_user(db, email).id)


@pytest.fixture(params=["anonymous", "operator", "owner"])
def identity(request: pytest.FixtureRequest, client: TestClient, services: Services) -> Identity:
    if request.param == "anonymous":
        return Identity("anonymous")
    tenant = sign_up(client, services)
    if request.param == "operator":
        email = f"operator-{uuid.uuid4().hex[:8]}@platform.example.com"
        with services.db.transaction(Scope.system()) as db:
            create_user(db, email, STRONG_PASSWORD, platform_role=PlatformRole.OPERATOR)
    else:
        email = tenant.email
    own = {"tenant_id": tenant.tenant_id, "operation_id": tenant.operation_id,
           "user_id": _user_id(services, tenant.email)}
    return Identity(request.param, email, _signed_in(services, email), own)


def _from_address(app: FastAPI, address: str) -> Callable:
    """The app, called from an address of its own: the fuzzed failed logins lock out their
    client address (in the session's database), which must not be the one the other tests share."""

    async def asgi(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": (address, 50000)}
        await app(scope, receive, send)

    return asgi


@pytest.fixture
def contract_schema(client: TestClient, identity: Identity) -> schemathesis.BaseSchema:
    # Depends on `identity` so that pytest runs the whole schema once per identity.
    return schemathesis.openapi.from_asgi("/openapi.json", _from_address(client.app, new_address()), config=CONFIG)


schema = schemathesis.pytest.from_fixture("contract_schema")


def _names_a_real_cluster(case: schemathesis.Case) -> bool:
    if not case.operation.path.startswith("/v1/clusters"):
        return False
    names = [(case.path_parameters or {}).get("name")]
    if isinstance(case.body, dict):
        names.append(case.body.get("name"))
    return any(isinstance(name, str) and name in REAL_CLUSTERS for name in names)


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _point_at_own_resources(case: schemathesis.Case, identity: Identity) -> None:
    """Replace well-formed ids by the identity's own in about half of the cases (chosen by the
    generated id itself, so deterministically); malformed ids stay, they test the refusals."""
    parameters = case.path_parameters or {}
    for name, own in identity.own.items():
        if name in parameters and _is_uuid(parameters[name]) and uuid.UUID(str(parameters[name])).int % 2:
            parameters[name] = own


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_keeps_its_contract(case: schemathesis.Case, identity: Identity, services: Services) -> None:
    hypothesis.assume(not _names_a_real_cluster(case))
    _point_at_own_resources(case, identity)
    # A copy: schemathesis strips credentials from the dict it is given for its probes.
    response = case.call_and_validate(headers=dict(identity.headers))
    assert response.status_code < 500, response.text
    if case.operation.path == "/v1/auth/logout" and response.status_code == 204 and identity.email:
        identity.headers = _signed_in(services, identity.email)
