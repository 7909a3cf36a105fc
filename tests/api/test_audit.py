"""The audit log is hash-chained; verification finds an edited row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from api.settings import libpq_dsn
from tests.api.conftest import sign_up

ROOT = Path(__file__).resolve().parents[2]


def _verify_cli(database) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAMELEER_DATABASE_URL": database.url(database.app)}
    return subprocess.run([sys.executable, "-m", "api.audit", "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_state_changes_and_steps_are_audited(client, services, auditor_headers):
    tenant = sign_up(client, services)
    records = client.get("/v1/platform/audit", params={"tenant_id": tenant.tenant_id, "limit": 100}, headers=auditor_headers).json()
    actions = {r["action"] for r in records}
    assert {"tenant.signup", "operation.signup.billing", "operation.signup.stack_up", "operation.signup"} <= actions
    signup = next(r for r in records if r["action"] == "tenant.signup")
    assert signup["source_ip"] and signup["request_id"] and signup["actor"].startswith("user:")
    assert all(len(r["hash"]) == 64 for r in records)


def test_rejected_state_changing_request_is_audited(client, services, auditor_headers):
    client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password-123"}, headers={"X-Request-ID": "req-login-denied"})
    records = client.get("/v1/platform/audit", params={"limit": 50}, headers=auditor_headers).json()
    denied = [r for r in records if r["request_id"] == "req-login-denied"]
    assert len(denied) == 1 and denied[0]["result"] == "denied" and denied[0]["action"] == "auth.login"


def test_verification_detects_an_edited_row(client, services, database, auditor_headers):
    sign_up(client, services)
    assert client.get("/v1/platform/audit/verify", headers=auditor_headers).json()["ok"] is True
    assert _verify_cli(database).returncode == 0

    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        conn.execute("SET app.bypass_rls = 'on'")  # RLS is forced even for the owner
        row_id, actor = conn.execute(
            "SELECT id, actor FROM audit_log WHERE action = 'tenant.signup' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        def edit(value: str) -> None:
            with conn.transaction():
                conn.execute("SELECT set_config('app.bypass_rls', 'on', true)")
                conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
                conn.execute("UPDATE audit_log SET actor = %s WHERE id = %s", (value, row_id))
                conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")

        edit("user:someone-else")
        try:
            verdict = client.get("/v1/platform/audit/verify", headers=auditor_headers).json()
            assert verdict["ok"] is False
            assert verdict["first_bad_id"] == row_id
            assert "edited" in verdict["reason"]
            cli = _verify_cli(database)
            assert cli.returncode == 1 and f'"first_bad_id": {row_id}' in cli.stdout
        finally:
            edit(actor)  # restore, so the chain stays valid for the other tests
    assert client.get("/v1/platform/audit/verify", headers=auditor_headers).json()["ok"] is True


def test_audit_endpoints_need_a_platform_role(client, services):
    tenant = sign_up(client, services)
    response = client.get("/v1/platform/audit/verify", headers=tenant.headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
