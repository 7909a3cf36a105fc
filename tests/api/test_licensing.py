"""License JWTs: issuing from the catalog, delivery (ETag, download), offline verification."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.auth.jws import sign
from api.licensing.verify import LicensePeriod, LicenseState, keys_from_jwks, license_period, verify_license
from components.catalog import get_tier
from tests.api.conftest import sign_up

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
KID = "license-test-1"


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keys(signing_key):
    return {KID: signing_key.public_key()}


def _claims(**overrides) -> dict:
    claims = {"aud": "cameleer-server", "tenant_id": "t-1", "tier": "low", "status": "active",
              "features": {}, "limits": {}, "iat": int((NOW - timedelta(days=1)).timestamp()),
              "exp": int((NOW + timedelta(days=29)).timestamp())}
    claims.update(overrides)
    return claims


def _token(signing_key, **overrides) -> str:
    return sign(_claims(**overrides), KID, signing_key)


# -- verification rules (pure, no database) ------------------------------------------

def test_valid_license(signing_key, keys):
    verdict = verify_license(_token(signing_key), keys, now=NOW)
    assert verdict.state is LicenseState.VALID and verdict.features_enabled and not verdict.read_only


def test_signed_by_another_key_is_invalid(keys):
    verdict = verify_license(_token(Ed25519PrivateKey.generate()), keys, now=NOW)
    assert verdict.state is LicenseState.INVALID and "signature" in verdict.reason


def test_unknown_kid_is_invalid(keys):
    token = sign(_claims(), "someone-elses-kid", Ed25519PrivateKey.generate())
    assert verify_license(token, keys, now=NOW).state is LicenseState.INVALID


def test_alg_none_is_invalid(keys):
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    token = f"{b64({'alg': 'none', 'kid': KID})}.{b64(_claims())}."
    verdict = verify_license(token, keys, now=NOW)
    assert verdict.state is LicenseState.INVALID and "'none'" in verdict.reason


def test_hs256_is_invalid(keys):
    token = jwt.encode(_claims(), "a-shared-secret-of-enough-length-123456", algorithm="HS256", headers={"kid": KID})
    verdict = verify_license(token, keys, now=NOW)
    assert verdict.state is LicenseState.INVALID and "HS256" in verdict.reason


def test_tampered_payload_is_invalid(signing_key, keys):
    header, _, signature = _token(signing_key).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(tier="business")).encode()).rstrip(b"=").decode()
    assert verify_license(f"{header}.{payload}.{signature}", keys, now=NOW).state is LicenseState.INVALID


def test_expiry_grace_is_read_only_then_invalid(signing_key, keys):
    expired = _token(signing_key, exp=int((NOW - timedelta(days=3)).timestamp()))
    assert verify_license(expired, keys, now=NOW).state is LicenseState.GRACE_READ_ONLY
    assert verify_license(expired, keys, now=NOW).read_only
    long_expired = _token(signing_key, exp=int((NOW - timedelta(days=8)).timestamp()))
    verdict = verify_license(long_expired, keys, now=NOW)
    assert verdict.state is LicenseState.INVALID and "past the 7-day grace" in verdict.reason


def test_suspended_turns_features_off(signing_key, keys):
    verdict = verify_license(_token(signing_key, status="suspended"), keys, now=NOW)
    assert verdict.state is LicenseState.SUSPENDED and not verdict.features_enabled


def test_offline_grace_is_24_hours_from_the_last_successful_check(signing_key, keys):
    token = _token(signing_key)
    recent = verify_license(token, keys, now=NOW, api_reachable=False, last_successful_check=NOW - timedelta(hours=23))
    assert recent.state is LicenseState.OFFLINE_GRACE and recent.features_enabled
    stale = verify_license(token, keys, now=NOW, api_reachable=False, last_successful_check=NOW - timedelta(hours=25))
    assert stale.state is LicenseState.INVALID
    never = verify_license(token, keys, now=NOW, api_reachable=False, last_successful_check=None)
    assert never.state is LicenseState.INVALID


# -- issuing and delivery -------------------------------------------------------------

def test_issued_license_carries_catalog_features_and_limits(client, services):
    tenant = sign_up(client, services, tier="mid")
    body = client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()
    jwks = client.get("/.well-known/license-jwks.json").json()
    verdict = verify_license(body["token"], keys_from_jwks(jwks))
    assert verdict.state is LicenseState.VALID
    claims = verdict.claims
    tier = get_tier("mid")
    assert claims["tenant_id"] == tenant.tenant_id and claims["tier"] == "mid"
    assert claims["features"] == tier.features.as_claims() and claims["limits"] == tier.limits.as_claims()
    assert jwt.get_unverified_header(body["token"])["kid"] == body["kid"]


def test_license_etag_and_304(client, services):
    tenant = sign_up(client, services)
    first = client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers)
    assert first.status_code == 200 and "max-age" in first.headers["cache-control"]
    etag = first.headers["etag"]
    again = client.get(f"/api/license/{tenant.tenant_id}", headers={**tenant.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
    stale = client.get(f"/api/license/{tenant.tenant_id}", headers={**tenant.headers, "If-None-Match": '"other"'})
    assert stale.status_code == 200


def test_license_download_is_an_attachment(client, services):
    tenant = sign_up(client, services)
    response = client.get(f"/api/license/{tenant.tenant_id}/download", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="cameleer-{tenant.slug}.license"'
    assert response.text.count(".") == 2


def test_license_signed_by_a_retiring_key_verifies_until_retired(client, services, operator_headers):
    tenant = sign_up(client, services)
    token = client.get(f"/api/license/{tenant.tenant_id}", headers=tenant.headers).json()["token"]
    old_kid = jwt.get_unverified_header(token)["kid"]
    client.post("/v1/platform/signing-keys/rotate", json={"purpose": "license"}, headers=operator_headers)
    assert verify_license(token, keys_from_jwks(client.get("/.well-known/license-jwks.json").json())).state is LicenseState.VALID
    client.post(f"/v1/platform/signing-keys/{old_kid}/retire", headers=operator_headers)
    assert verify_license(token, keys_from_jwks(client.get("/.well-known/license-jwks.json").json())).state is LicenseState.INVALID


def test_verify_cli_exit_codes(tmp_path, signing_key):
    jwks_file = tmp_path / "jwks.json"
    from api.auth.jws import jwk
    jwks_file.write_text(json.dumps({"keys": [jwk(KID, signing_key.public_key())]}))
    now = datetime.now(UTC)

    def run(token: str, *extra: str) -> subprocess.CompletedProcess:
        path = tmp_path / "license.jwt"
        path.write_text(token)
        return subprocess.run([sys.executable, "-m", "api.licensing", "verify", str(path), "--jwks", str(jwks_file), *extra],
                              cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)

    good = _claims(iat=int(now.timestamp()), exp=int((now + timedelta(days=1)).timestamp()))
    assert run(sign(good, KID, signing_key)).returncode == 0
    result = run(sign(good, KID, Ed25519PrivateKey.generate()))
    assert result.returncode == 1 and json.loads(result.stdout)["state"] == "invalid"
    assert run(sign({**good, "status": "suspended"}, KID, signing_key)).returncode == 2
    assert run(sign(good, KID, signing_key), "--offline").returncode == 1
    recent = (now - timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "")
    assert run(sign(good, KID, signing_key), "--offline", "--last-check", recent).returncode == 0


def test_verdict_says_until_when_each_grace_lasts(signing_key, keys):
    expires = NOW - timedelta(days=3)
    verdict = verify_license(_token(signing_key, exp=int(expires.timestamp())), keys, now=NOW)
    assert verdict.as_dict()["grace_until"] == int((expires + timedelta(days=7)).timestamp())
    last_check = NOW - timedelta(hours=2)
    offline = verify_license(_token(signing_key), keys, now=NOW, api_reachable=False, last_successful_check=last_check)
    assert offline.as_dict()["offline_grace_until"] == int((last_check + timedelta(hours=24)).timestamp())
    assert verify_license(_token(signing_key), keys, now=NOW).as_dict()["offline_grace_until"] is None


def test_expiry_grace_boundaries(signing_key, keys):
    token = _token(signing_key, exp=int(NOW.timestamp()))
    assert verify_license(token, keys, now=NOW).state is LicenseState.VALID
    assert verify_license(token, keys, now=NOW + timedelta(seconds=1)).state is LicenseState.GRACE_READ_ONLY
    assert verify_license(token, keys, now=NOW + timedelta(days=7)).state is LicenseState.GRACE_READ_ONLY
    assert verify_license(token, keys, now=NOW + timedelta(days=7, seconds=1)).state is LicenseState.INVALID
    assert license_period(NOW, NOW + timedelta(days=1)) is LicensePeriod.GRACE
    assert license_period(NOW, NOW + timedelta(days=8)) is LicensePeriod.EXPIRED


def test_offline_grace_needs_a_real_last_check(signing_key, keys):
    token = _token(signing_key)
    future = verify_license(token, keys, now=NOW, api_reachable=False, last_successful_check=NOW + timedelta(days=1))
    assert future.state is LicenseState.INVALID  # a clock set back cannot stretch the 24 hours
    edge = verify_license(token, keys, now=NOW, api_reachable=False, last_successful_check=NOW - timedelta(hours=24))
    assert edge.state is LicenseState.OFFLINE_GRACE
    expired_offline = verify_license(_token(signing_key, exp=int((NOW - timedelta(days=1)).timestamp())), keys, now=NOW,
                                     api_reachable=False, last_successful_check=NOW - timedelta(hours=1))
    assert expired_offline.state is LicenseState.GRACE_READ_ONLY  # both graces: read-only
