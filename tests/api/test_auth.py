"""Login, access tokens (Ed25519, kid, JWKS), and the tokens that must be refused."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet

from api.auth.tokens import AUDIENCE
from api.settings import libpq_dsn
from tests.api import vault_support
from sqlalchemy import text

from api.auth.maintenance import maintain_signing_keys
from api.auth.signing import key_policies
from api.db.session import Scope
from api.licensing.verify import LicenseState, keys_from_jwks, verify_license
from tests.api.conftest import STRONG_PASSWORD, login, sign_up


def _claims(tenant, **overrides) -> dict:
    now = datetime.now(UTC)
    claims = {"iss": "cameleer-control-plane", "aud": AUDIENCE, "sub": str(uuid.uuid4()), "iat": now,
              "exp": now + timedelta(minutes=5), "jti": uuid.uuid4().hex, "sid": str(uuid.uuid4()),
              "memberships": [{"tenant": tenant.tenant_id, "role": "owner"}]}
    claims.update(overrides)
    return claims


def _status(client, tenant, token: str) -> int:
    return client.get(f"/v1/tenants/{tenant.tenant_id}", headers={"Authorization": f"Bearer {token}"}).status_code


def _current_kid(client, purpose: str = "access") -> str:
    document = "/.well-known/jwks.json" if purpose == "access" else "/.well-known/license-jwks.json"
    return max((k["kid"] for k in client.get(document).json()["keys"] if k["kid"].startswith(f"{purpose}-v")),
               key=lambda kid: int(kid.rpartition("-v")[2]))


def _transit_key(settings, purpose: str) -> dict:
    name = settings.access_signing_key if purpose == "access" else settings.license_signing_key
    return vault_support.client().secrets.transit.read_key(name)["data"]


def test_login_token_is_ed25519_signed_by_transit_with_the_key_version_as_kid(client, services, settings):
    tenant = sign_up(client, services)
    token = tenant.headers["Authorization"].split()[1]
    header = jwt.get_unverified_header(token)
    latest = _transit_key(settings, "access")["latest_version"]
    assert header["alg"] == "Ed25519" and header["kid"] == f"access-v{latest}"
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.headers["cache-control"].startswith("public")
    key = next(k for k in jwks.json()["keys"] if k["kid"] == header["kid"])
    assert key["alg"] == "Ed25519" and "d" not in key
    public = jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(key))
    claims = jwt.decode(token, public, algorithms=["Ed25519"], audience=AUDIENCE)
    assert claims["memberships"] == [{"tenant": tenant.tenant_id, "role": "owner"}]
    assert claims["exp"] - claims["iat"] <= 900
    # the public key is transit's own, not one kept anywhere else
    assert base64.b64decode(_transit_key(settings, "access")["keys"][str(latest)]["public_key"]) == \
        base64.urlsafe_b64decode(key["x"] + "=")


def test_an_outside_jose_library_verifies_tokens_without_deprecation_warnings(client, services):
    tenant = sign_up(client, services)
    token = tenant.headers["Authorization"].split()[1]
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # joserfc 1.8 warns on the polymorphic "EdDSA"
        claims = joserfc_jwt.decode(token, keys, algorithms=["Ed25519"]).claims
    assert claims["sub"] and claims["aud"] == AUDIENCE


def test_access_tokens_and_licenses_have_separate_keys_and_documents(client, services):
    access = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    sign_up(client, services)
    licenses = {k["kid"] for k in client.get("/.well-known/license-jwks.json").json()["keys"]}
    assert access and licenses and not access & licenses
    assert all(k.startswith("access-") for k in access) and all(k.startswith("license-") for k in licenses)


def test_tokens_of_the_legacy_eddsa_keys_verify_until_those_are_retired(client, services, database, operator_headers):
    """A key from before transit signing keeps only its public half (migration 0006) and
    still verifies the polymorphic EdDSA tokens it signed, until retired."""
    tenant = sign_up(client, services)
    legacy = Ed25519PrivateKey.generate()
    kid = f"access-legacy-{uuid.uuid4().hex[:8]}"
    pem = legacy.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with psycopg.connect(libpq_dsn(database.url(database.owner))) as conn:
        conn.execute("INSERT INTO signing_keys (kid, purpose, algorithm, public_key_pem, status, retiring_at)"
                     " VALUES (%s, 'access', 'EdDSA', %s, 'retiring', now())", (kid, pem.decode()))
    claims = _claims(tenant, sub=str(uuid.uuid4()), iss="cameleer-control-plane")
    token = jwt.encode(claims, legacy, algorithm="EdDSA", headers={"kid": kid})
    published = {k["kid"]: k for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert published[kid]["alg"] == "EdDSA"
    assert _status(client, tenant, token) in (200, 403)  # verified; the random sub is no member
    assert client.post(f"/v1/platform/signing-keys/{kid}/retire", headers=operator_headers).status_code == 200
    assert _status(client, tenant, token) == 401


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
        "foreign key": jwt.encode(_claims(tenant), foreign, algorithm="Ed25519", headers={"kid": kid}),
        "foreign key, legacy alg": jwt.encode(_claims(tenant), foreign, algorithm="EdDSA", headers={"kid": kid}),
        "alg none": unsigned,
        "HS256": jwt.encode(_claims(tenant), public_x, algorithm="HS256", headers={"kid": kid}),
        "expired": jwt.encode(_claims(tenant, exp=datetime.now(UTC) - timedelta(seconds=5)), foreign, algorithm="Ed25519", headers={"kid": kid}),
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


def test_no_private_key_is_kept_in_the_database_or_exportable(client, services, settings, database, operator_headers):
    sign_up(client, services)
    with psycopg.connect(libpq_dsn(database.url(database.owner))) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'signing_keys'")}
    assert columns and not any("private" in c for c in columns)
    listing = client.get("/v1/platform/signing-keys", headers=operator_headers)
    assert listing.status_code == 200 and "private" not in listing.text.lower()
    assert {"access", "license"} <= {k["purpose"] for k in listing.json()}
    for purpose in ("access", "license"):  # transit keys that can never be exported
        key = _transit_key(settings, purpose)
        assert key["type"] == "ed25519" and key["exportable"] is False


def test_maintenance_rotates_on_schedule_and_retires_each_purpose_after_its_overlap(client, services, settings):
    tenant = sign_up(client, services)
    old_token = tenant.headers["Authorization"].split()[1]
    old_license = client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()["token"]
    old_access, old_license_kid = _current_kid(client), _current_kid(client, "license")
    start = datetime.now(UTC)
    assert all(r.rotated_to is None and not r.retired for r in maintain_signing_keys(services, now=start))

    later = start + timedelta(days=max(settings.access_key_rotation_days, settings.license_key_rotation_days) + 1)
    rotated = {r.purpose.value: r.rotated_to for r in maintain_signing_keys(services, now=later)}
    assert rotated["access"] not in (None, old_access) and rotated["license"] not in (None, old_license_kid)
    assert _current_kid(client) == rotated["access"]

    policies = key_policies(settings)
    overlap = {purpose.value: policy.overlap for purpose, policy in policies.items()}
    during = start + overlap["access"] - timedelta(seconds=60)
    assert all(not r.retired for r in maintain_signing_keys(services, now=during))
    assert _status(client, tenant, old_token) == 200

    after_access = start + overlap["access"] + timedelta(seconds=5)
    retired = {r.purpose.value: r.retired for r in maintain_signing_keys(services, now=after_access)}
    assert old_access in retired["access"] and retired["license"] == []
    assert _status(client, tenant, old_token) == 401
    fresh = login(client, tenant.email)
    assert client.get(f"/v1/tenants/{tenant.tenant_id}", headers=fresh).status_code == 200
    license_keys = keys_from_jwks(client.get("/.well-known/license-jwks.json").json())
    assert verify_license(old_license, license_keys).state is LicenseState.VALID  # licenses overlap longer

    after_license = start + overlap["license"] + timedelta(seconds=5)
    retired = {r.purpose.value: r.retired for r in maintain_signing_keys(services, now=after_license)}
    assert old_license_kid in retired["license"]
    license_keys = keys_from_jwks(client.get("/.well-known/license-jwks.json").json())
    assert verify_license(old_license, license_keys).state is LicenseState.INVALID
    # nothing is due now: a second run at the real time changes nothing
    assert all(r.rotated_to is None and not r.retired for r in maintain_signing_keys(services))
    with services.db.transaction(Scope.system()) as session:
        actions = session.execute(text(
            "SELECT action, resource FROM audit_log WHERE actor = 'system:signing-key-maintenance'")).all()
    assert ("signing_key.rotate", f"signing_key:{rotated['access']}") in actions
    assert ("signing_key.retire", f"signing_key:{old_license_kid}") in actions


def test_signing_needs_the_secrets_server_and_says_so(client, services, settings):
    """Sealed: a login is a 503 problem with Retry-After, nothing is signed any other way."""
    tenant = sign_up(client, services)
    vault = vault_support.client()
    unseal_key = vault_support.unseal_key()
    vault.sys.seal()
    try:
        response = client.post("/v1/auth/login", json={"email": tenant.email, "password": STRONG_PASSWORD})
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/signing-unavailable"
        assert "sealed" in response.json()["detail"]
    finally:
        vault_support.unseal(unseal_key)
    assert client.post("/v1/auth/login", json={"email": tenant.email, "password": STRONG_PASSWORD}).status_code == 200
