"""The OpenAPI document states the rules the server applies: a client generated from it sends
requests the server accepts, and expects the answers the server gives."""

from __future__ import annotations

import uuid

import pytest

from api.auth.passwords import MIN_LENGTH
from components.catalog import MAX_SLUG_LENGTH, TIERS
from tests.api.conftest import signup_body

# Every password the server checks with its strength rules (login's is only compared).
STRONG_PASSWORD_FIELDS = [
    ("SignupRequest", "owner_password"),
    ("PasswordChangeRequest", "new_password"),
    ("PasswordResetConfirmation", "new_password"),
    ("AcceptRequest", "password"),
]
IDEMPOTENT_OPERATIONS = [
    ("post", "/v1/signup"), ("post", "/v1/organizations"), ("post", "/v1/tenants/{tenant_id}/suspend"),
    ("post", "/v1/tenants/{tenant_id}/reactivate"), ("post", "/v1/tenants/{tenant_id}/tier"),
    ("delete", "/v1/tenants/{tenant_id}"),
]


@pytest.fixture
def document(client) -> dict:
    return client.get("/openapi.json").json()


def _string_schema(schema: dict) -> dict:
    """The string branch of a property that may also be null."""
    return next((s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"), schema)


@pytest.mark.parametrize(("model", "field"), STRONG_PASSWORD_FIELDS)
def test_checked_passwords_declare_the_servers_minimum_and_rules(document, model, field):
    prop = document["components"]["schemas"][model]["properties"][field]
    assert _string_schema(prop)["minLength"] == MIN_LENGTH == 12
    described = prop.get("description", "") + _string_schema(prop).get("description", "")
    assert "5 of them different" in described and "/problems/weak-password" in described


def test_login_keeps_accepting_the_passwords_of_older_accounts(document):
    assert document["components"]["schemas"]["LoginRequest"]["properties"]["password"]["minLength"] == 1


@pytest.mark.parametrize(("method", "path"), IDEMPOTENT_OPERATIONS)
def test_every_operation_reading_an_idempotency_key_declares_its_length(document, method, path):
    (header,) = [p for p in document["paths"][path][method]["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    assert header["schema"] == {**header["schema"], "type": "string", "minLength": 8, "maxLength": 200}
    assert header["required"] is (path in ("/v1/signup", "/v1/organizations"))


def test_slug_and_tier_declare_the_catalogs_rules(document):
    signup = document["components"]["schemas"]["SignupRequest"]["properties"]
    assert signup["slug"]["maxLength"] == MAX_SLUG_LENGTH and signup["slug"]["pattern"].startswith("^[a-z0-9]")
    assert signup["tier"]["enum"] == list(TIERS)
    assert document["components"]["schemas"]["ChangeTierRequest"]["properties"]["tier"]["enum"] == list(TIERS)


def test_each_operation_lists_the_problems_it_can_give(document):
    operations = document["paths"]
    assert sorted(operations["/healthz"]["get"]["responses"]) == ["200"]
    assert sorted(operations["/v1/auth/me"]["get"]["responses"]) == ["200", "401", "503"]
    assert sorted(operations["/v1/tenants/{tenant_id}/reactivate"]["post"]["responses"]) == [
        "202", "401", "402", "403", "404", "409", "422", "503"]
    login_429 = operations["/v1/auth/login"]["post"]["responses"]["429"]
    assert "Retry-After" in login_429["headers"] and "application/problem+json" in login_429["content"]
    validation = operations["/v1/tenants/{tenant_id}"]["get"]["responses"]["422"]
    assert list(validation["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_accepting_an_invitation_may_go_without_a_token(document):
    assert {} in document["paths"]["/v1/invitations/accept"]["post"]["security"]


@pytest.mark.parametrize(("path", "allowed"), [
    ("/v1/tenants/00000000-0000-0000-0000-000000000000", "DELETE, GET"),
    ("/v1/tenants/00000000-0000-0000-0000-000000000000/members/00000000-0000-0000-0000-000000000000",
     "DELETE, PATCH"),
    ("/v1/clusters/eu9", "DELETE, GET, PATCH"),
    ("/v1/clusters", "GET, POST"),
])
def test_a_405_allows_every_method_of_the_path(client, path, allowed):
    response = client.put(path, json={})
    assert response.status_code == 405 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["Allow"] == allowed


def test_a_slug_with_a_trailing_newline_is_refused(client):
    slug = f"t-{uuid.uuid4().hex[:8]}"
    body = signup_body(slug=f"{slug}\n", owner_email=f"owner@{slug}.example.com")
    response = client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 422 and response.json()["type"] == "/problems/invalid-slug"
