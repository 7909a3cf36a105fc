"""Licenses that do not lapse: the hourly renewal at a frozen clock, the tenant server's
credential (its own license and usage reports, nothing else), grace fields in the answer."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from api.billing.signatures import signature_header
from api.db.models import AuditRecord, License, Operation, OperationKind
from api.db.session import Scope
from api.licensing import renewal
from api.licensing.renewal import renew_due_licenses
from api.licensing.verify import LicenseState, keys_from_jwks, verify_license
from tests.api import vault_support
from tests.api.conftest import run_queue, sign_up


def _licenses(services, tenant_id: str) -> list[License]:
    with services.db.transaction(Scope.system()) as session:
        rows = session.scalars(select(License).where(License.tenant_id == uuid.UUID(tenant_id))
                               .order_by(License.issued_at)).all()
        session.expunge_all()
    return list(rows)


def _audited(services, tenant_id: str, action: str) -> list[AuditRecord]:
    with services.db.transaction(Scope.system()) as session:
        rows = session.scalars(select(AuditRecord).where(AuditRecord.tenant_id == uuid.UUID(tenant_id),
                                                         AuditRecord.action == action)).all()
        session.expunge_all()
    return list(rows)


def _credential(slug: str) -> dict[str, str]:
    """What the tenant server reads from its KV path."""
    return vault_support.client().secrets.kv.v2.read_secret_version(
        f"{slug}/usage-credential", mount_point="tenants", raise_on_deleted_version=False)["data"]["data"]


def _signed_get(client, path: str, credential: dict[str, str], *, timestamp: int | None = None, **headers):
    signature = signature_header(credential["secret"], f"GET {path}".encode(), timestamp)
    return client.get(path, headers={"Cameleer-Server-Key": credential["key_id"], "Cameleer-Signature": signature,
                                     **headers})


def test_a_tenant_29_days_after_signup_gets_the_next_license_once(client, services, driver):
    tenant = sign_up(client, services)
    (first,) = _licenses(services, tenant.tenant_id)

    services.clock = lambda: first.issued_at + timedelta(days=22)  # 8 days left: not due yet
    assert tenant.tenant_id not in renew_due_licenses(services)

    day_29 = first.issued_at + timedelta(days=29)
    services.clock = lambda: day_29
    assert renew_due_licenses(services)[tenant.tenant_id].startswith("renewed until")
    assert tenant.tenant_id not in renew_due_licenses(services)  # the second run finds nothing due
    old, renewed = _licenses(services, tenant.tenant_id)
    assert old.id == first.id and old.superseded_at == day_29 and renewed.superseded_at is None
    assert renewed.issued_at == day_29 and renewed.expires_at == day_29 + timedelta(days=30)
    assert (renewed.tier, renewed.status) == (first.tier, first.status)

    (record,) = _audited(services, tenant.tenant_id, "license.renewed")
    assert record.actor == "license-renewal" and record.details["license_id"] == str(renewed.id)
    assert renewed.token not in json.dumps(record.details)

    stored = vault_support.client().secrets.kv.v2.read_secret_version(
        f"{tenant.slug}/license", mount_point="tenants", raise_on_deleted_version=False)["data"]["data"]
    assert stored["token"] == renewed.token  # the KV path at once
    run_queue(services)  # and the stack's license Secret through a license_renewal operation
    with services.db.transaction(Scope.system()) as session:
        operation = session.scalar(select(Operation).where(Operation.tenant_id == uuid.UUID(tenant.tenant_id),
                                                           Operation.kind == OperationKind.LICENSE_RENEWAL.value))
        assert operation.status == "SUCCEEDED" and operation.params == {"license_id": str(renewed.id)}
    (stack,) = [s for (tid, _), s in driver.stacks.items() if tid == uuid.UUID(tenant.tenant_id)]
    assert stack["license"] == renewed.token and not stack["suspended"]

    jwks = keys_from_jwks(client.get("/.well-known/license-jwks.json").json())
    day_31 = first.issued_at + timedelta(days=31)
    assert verify_license(first.token, jwks, now=day_31).state is LicenseState.GRACE_READ_ONLY
    assert verify_license(renewed.token, jwks, now=day_31).state is LicenseState.VALID  # valid for the next period


def test_renewal_skips_suspended_tenants(client, services):
    tenant = sign_up(client, services)
    assert client.post(f"/v1/tenants/{tenant.tenant_id}/suspend", headers={
        **tenant.headers, "Idempotency-Key": uuid.uuid4().hex}).status_code == 202
    run_queue(services)
    (*_, current) = _licenses(services, tenant.tenant_id)
    services.clock = lambda: current.issued_at + timedelta(days=29)
    assert tenant.tenant_id not in renew_due_licenses(services)
    assert _licenses(services, tenant.tenant_id)[-1].id == current.id
    run_queue(services)


def test_the_server_credential_fetches_its_own_license_and_nothing_else(client, services):
    tenant, other = sign_up(client, services), sign_up(client, services)
    credential = _credential(tenant.slug)  # issued with the stack
    (issued,) = _audited(services, tenant.tenant_id, "server_credential.issue")
    assert issued.details == {"key_id": credential["key_id"]}
    own = f"/api/license/{tenant.tenant_id}"

    fetched = _signed_get(client, own, credential)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["token"] == _licenses(services, tenant.tenant_id)[-1].token
    assert fetched.json()["state"] == "valid"
    assert _signed_get(client, own, credential, **{"If-None-Match": fetched.headers["etag"]}).status_code == 304

    report = json.dumps({"report_id": "r-1", "ingested_bytes": 10, "at": datetime.now(UTC).isoformat()}).encode()
    reported = client.post("/v1/billing/usage-reports", content=report, headers={
        "Content-Type": "application/json", "Cameleer-Server-Key": credential["key_id"],
        "Cameleer-Signature": signature_header(credential["secret"], report)})
    assert reported.status_code == 200 and reported.json()["recorded"] is True

    refused = {
        "another tenant's license": _signed_get(client, f"/api/license/{other.tenant_id}", credential),
        "the download": _signed_get(client, f"{own}/download", credential),
        "the tenant": _signed_get(client, f"/v1/tenants/{tenant.tenant_id}", credential),
        "the caller": _signed_get(client, "/v1/auth/me", credential),
        "the operations": _signed_get(client, f"/v1/operations/{tenant.operation_id}", credential),
        "the rotation": client.post(f"/v1/tenants/{tenant.tenant_id}/server-credential", headers={
            "Cameleer-Server-Key": credential["key_id"],
            "Cameleer-Signature": signature_header(credential["secret"], b"")}),
        "as a bearer token": client.get(own, headers={"Authorization": f"Bearer {credential['secret']}"}),
        "another path's signature": client.get(own, headers={
            "Cameleer-Server-Key": credential["key_id"],
            "Cameleer-Signature": signature_header(credential["secret"], f"GET /api/license/{other.tenant_id}".encode())}),
        "a stale signature": _signed_get(client, own, credential, timestamp=int(time.time()) - 3600),
        "a wrong secret": _signed_get(client, own, {**credential, "secret": "not-the-secret"}),
    }
    statuses = {name: response.status_code for name, response in refused.items()}
    assert statuses == {"another tenant's license": 404, **dict.fromkeys(list(refused)[1:], 401)}
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused.values())
    assert refused["a wrong secret"].json()["type"] == "/problems/server-credential-unauthorized"
    assert credential["secret"] not in json.dumps([r.text for r in refused.values()])


def test_rotation_retires_the_old_secret_at_once(client, services):
    tenant = sign_up(client, services)
    old, own = _credential(tenant.slug), f"/api/license/{tenant.tenant_id}"
    rotated = client.post(f"/v1/tenants/{tenant.tenant_id}/server-credential", headers=tenant.headers)
    assert rotated.status_code == 201
    new = rotated.json()
    assert _credential(tenant.slug) == new and new["key_id"] != old["key_id"]
    assert _signed_get(client, own, old).status_code == 401
    assert _signed_get(client, own, new).status_code == 200
    (record,) = _audited(services, tenant.tenant_id, "server_credential.rotate")
    assert record.details == {"key_id": new["key_id"]} and new["secret"] not in json.dumps(record.details)


def test_license_answer_shows_the_grace_periods(client, services):
    tenant = sign_up(client, services)
    (license_row,) = _licenses(services, tenant.tenant_id)
    path, expires = f"/api/license/{tenant.tenant_id}", license_row.expires_at
    expected_grace = expires + timedelta(days=7)

    def answer_at(moment: datetime) -> dict:
        services.clock = lambda: moment
        response = client.get(path, headers=tenant.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def at(field: str, body: dict) -> datetime:
        return datetime.fromisoformat(body[field])

    day_1 = answer_at(license_row.issued_at + timedelta(days=1))
    assert day_1["state"] == "valid" and at("expires_at", day_1) == expires and at("grace_until", day_1) == expected_grace
    assert at("offline_grace_until", day_1) - at("checked_at", day_1) == timedelta(hours=24)
    day_31 = answer_at(license_row.issued_at + timedelta(days=31))
    assert day_31["state"] == "grace" and at("grace_until", day_31) == expected_grace
    assert answer_at(license_row.issued_at + timedelta(days=38))["state"] == "expired"
    etags = {client.get(path, headers=tenant.headers).headers["etag"]}
    services.clock = lambda: license_row.issued_at + timedelta(days=31)
    assert client.get(path, headers=tenant.headers).headers["etag"] not in etags  # the state is part of the answer


def test_one_tenants_failed_renewal_stops_no_other(client, services, driver, monkeypatch):
    first, second = sign_up(client, services), sign_up(client, services)
    (license_of_second,) = _licenses(services, second.tenant_id)
    services.clock = lambda: license_of_second.issued_at + timedelta(days=29)
    real_queue_delivery = renewal._queue_delivery

    def failing_for_first(session, services_, tenant_id, renewed):
        if str(tenant_id) == first.tenant_id:
            raise RuntimeError("the job queue refused")
        return real_queue_delivery(session, services_, tenant_id, renewed)

    monkeypatch.setattr(renewal, "_queue_delivery", failing_for_first)
    outcomes = renew_due_licenses(services)
    assert outcomes[first.tenant_id].startswith("failed (RuntimeError)")
    assert outcomes[second.tenant_id].startswith("renewed until")
    assert len(_licenses(services, first.tenant_id)) == 1  # rolled back: still due for the next run
    monkeypatch.undo()
    assert renew_due_licenses(services)[first.tenant_id].startswith("renewed until")
