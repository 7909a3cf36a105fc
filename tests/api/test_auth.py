"""Login, access tokens (Ed25519, kid, JWKS), and the tokens that must be refused."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.auth.tokens import AUDIENCE
from api.settings import libpq_dsn
from tests.api.conftest import sign_up


def _claims(tenant, **overrides) -> dict:
    now = datetime.now(UTC)
    claims = {"iss": "cameleer-control-plane", "aud": AUDIENCE, "sub": str(uuid.uuid4()), "iat": now,
              "exp": now + timedelta(minutes=5), "memberships": [{"tenant": tenant.tenant_id, "role": "owner"}]}
    claims.update(overrides)
    return claims


def _status(client, tenant, token: str) -> int:
    return client.get(f"/v1/tenants/{tenant.tenant_id}", headers={"Authorization": f"Bearer {token}"}).status_code


def _current_kid(client) -> str:
    return next(k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"] if k["kid"].startswith("access-"))


def test_login_token_is_eddsa_with_kid_published_in_jwks(client, services):
    tenant = sign_up(client, services)
    token = tenant.headers["Authorization"].split()[1]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.headers["cache-control"].startswith("public")
    key = next(k for k in jwks.json()["keys"] if k["kid"] == header["kid"])
    public = jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(key))
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE)
    assert claims["memberships"] == [{"tenant": tenant.tenant_id, "role": "owner"}]
    assert claims["exp"] - claims["iat"] <= 900


def test_wrong_password_is_a_401_problem(client, services):
    tenant = sign_up(client, services)
    response = client.post("/v1/auth/login", json={"email": tenant.email, "password": "not-the-password-1"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-credentials"


def test_missing_token_is_401_with_www_authenticate(client, services):
    tenant = sign_up(client, services)
    response = client.get(f"/v1/tenants/{tenant.tenant_id}")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_forged_tokens_are_refused(client, services):
    tenant = sign_up(client, services)
    kid = _current_kid(client)
    foreign = Ed25519PrivateKey.generate()
    public_x = next(  # an attacker knows the public key; HS256 with it as the secret must not work
        k for k in client.get("/.well-known/jwks.json").json()["keys"] if k["kid"] == kid
    )["x"].encode()
    unsigned = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid}).encode()).rstrip(b"=").decode()
        + "." + base64.urlsafe_b64encode(json.dumps(_claims(tenant, iat=int(time.time()), exp=int(time.time()) + 300)).encode()).rstrip(b"=").decode() + "."
    )
    forged = {
        "foreign key": jwt.encode(_claims(tenant), foreign, algorithm="EdDSA", headers={"kid": kid}),
        "alg none": unsigned,
        "HS256": jwt.encode(_claims(tenant), public_x, algorithm="HS256", headers={"kid": kid}),
        "expired": jwt.encode(_claims(tenant, exp=datetime.now(UTC) - timedelta(seconds=5)), foreign, algorithm="EdDSA", headers={"kid": kid}),
    }
    for name, token in forged.items():
        assert _status(client, tenant, token) == 401, name
    # tampered: a valid token with its payload changed
    header, payload, signature = tenant.headers["Authorization"].split()[1].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["platform_roles"] = ["operator"]
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _status(client, tenant, f"{header}.{tampered_payload}.{signature}") == 401
    assert _status(client, tenant, tenant.headers["Authorization"].split()[1]) == 200


def test_rotation_keeps_old_tokens_until_the_key_is_retired(client, services, operator_headers):
    tenant = sign_up(client, services)
    old_kid = _current_kid(client)
    rotated = client.post("/v1/platform/signing-keys/rotate", json={"purpose": "access"}, headers=operator_headers)
    assert rotated.status_code == 200 and rotated.json()["kid"] != old_kid
    assert client.get(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).status_code == 200  # retiring verifies
    retired = client.post(f"/v1/platform/signing-keys/{old_kid}/retire", headers=operator_headers)
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    assert client.get(f"/v1/tenants/{tenant.tenant_id}", headers=tenant.headers).status_code == 401
    kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert old_kid not in kids and rotated.json()["kid"] in kids


def test_private_keys_are_encrypted_at_rest_and_not_exposed(client, services, database, operator_headers):
    sign_up(client, services)
    with psycopg.connect(libpq_dsn(database.url(database.owner))) as conn:
        blobs = [bytes(r[0]) for r in conn.execute("SELECT private_key_encrypted FROM signing_keys").fetchall()]
    assert blobs and all(b"PRIVATE KEY" not in blob for blob in blobs)
    listing = client.get("/v1/platform/signing-keys", headers=operator_headers).text
    assert "private" not in listing.lower()
