"""Property-based contract test: every operation of the OpenAPI document, fuzzed by
schemathesis against the app (a throw-away database, the fake engine, the local OpenBao),
anonymously and as an operator and a tenant owner. Every answer must be one the document
describes (status, content type, body and headers), bad input must be refused, and no
answer may be a 5xx."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.roles import PlatformRole
from api.services import Services
from tests.api.conftest import login, platform_user, sign_up

# Names of the clusters whose real kubeconfigs the local OpenBao holds (platform/clusters/<name>),
# which other tests and the engine use: a generated register or delete naming one is dropped.
REAL_CLUSTERS = frozenset((os.environ.get("CAMELEER_LOCAL_CLUSTERS") or "eu1 eu2 dc1").split()) | {"eu1"}

# Bounded: about 2 minutes for the whole file on 2 shared cores. The coverage phase adds its
# own boundary cases (one under a minimum length, ...) to the fuzzed ones.
CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": 8, "deterministic": True},
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
    """Who calls: the headers to send, and how to sign in again after a logout ended the session."""

    name: str
    headers: dict[str, str]
    sign_in: Callable[[], dict[str, str]] | None = None
    tenant_id: str | None = None
    operation_id: str | None = None


@pytest.fixture
def contract_app(client: TestClient):
    return client.app


@pytest.fixture
def contract_schema(contract_app, identity: "Identity"):
    # Depends on `identity` so that pytest runs the whole schema once per identity.
    return schemathesis.openapi.from_asgi("/openapi.json", contract_app, config=CONFIG)


@pytest.fixture(params=["anonymous", "operator", "owner"])
def identity(request: pytest.FixtureRequest, client: TestClient, services: Services) -> Identity:
    if request.param == "anonymous":
        return Identity("anonymous", {})
    if request.param == "operator":
        return Identity("operator", platform_user(client, services, PlatformRole.OPERATOR))
    owner = sign_up(client, services)
    return Identity("owner", owner.headers, sign_in=lambda: login(client, owner.email),
                    tenant_id=owner.tenant_id, operation_id=owner.operation_id)


schema = schemathesis.pytest.from_fixture("contract_schema")


def _names_a_real_cluster(case: schemathesis.Case) -> bool:
    if not case.operation.path.startswith("/v1/clusters"):
        return False
    names = [(case.path_parameters or {}).get("name")]
    if isinstance(case.body, dict):
        names.append(case.body.get("name"))
    return any(isinstance(name, str) and name in REAL_CLUSTERS for name in names)


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_keeps_its_contract(case: schemathesis.Case, identity: Identity) -> None:
    hypothesis.assume(not _names_a_real_cluster(case))
    # A copy: schemathesis strips credentials from the dict it is given for its probes.
    response = case.call_and_validate(headers=dict(identity.headers))
    assert response.status_code < 500, response.text
    if case.operation.path == "/v1/auth/logout" and response.status_code == 204 and identity.sign_in:
        identity.headers = identity.sign_in()
