"""The audit log is hash-chained; verification finds an edited row, and signed checkpoints
exported outside the database catch a consistent rewrite of the tail and a truncation."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from api.audit.chain import record_hash, verify_chain
from api.audit.checkpoint import TOKEN_TYPE, checkpoint_file, take_checkpoint
from api.auth import jws
from api.db.models import AuditRecord
from api.db.session import Scope
from api.jobs.app import build_job_app
from api.jobs.tasks import AUDIT_CHECKPOINT_TASK
from api.settings import libpq_dsn
from tests.api.conftest import run_queue, sign_up

ROOT = Path(__file__).resolve().parents[2]


def _verify_cli(database, settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAMELEER_DATABASE_URL": database.url(database.app),
           "CAMELEER_DATABASE_SYSTEM_URL": database.url(database.system), "CAMELEER_DATA_DIR": str(settings.data_dir),
           "CAMELEER_AUDIT_SIGNING_KEY": settings.audit_signing_key}
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


def test_verification_detects_an_edited_row(client, services, settings, database, auditor_headers):
    sign_up(client, services)
    assert client.get("/v1/platform/audit/verify", headers=auditor_headers).json()["ok"] is True
    assert _verify_cli(database, settings).returncode == 0

    with _owner(database) as conn:
        row_id, actor = conn.execute(
            "SELECT id, actor FROM audit_log WHERE action = 'tenant.signup' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        def edit(value: str) -> None:
            with _tampering(conn):
                conn.execute("UPDATE audit_log SET actor = %s WHERE id = %s", (value, row_id))

        edit("user:someone-else")
        try:
            verdict = client.get("/v1/platform/audit/verify", headers=auditor_headers).json()
            assert verdict["ok"] is False
            assert verdict["first_bad_id"] == row_id
            assert "edited" in verdict["reason"]
            cli = _verify_cli(database, settings)
            assert cli.returncode == 1 and f'"first_bad_id": {row_id}' in cli.stdout
        finally:
            edit(actor)  # restore, so the chain stays valid for the other tests
    assert client.get("/v1/platform/audit/verify", headers=auditor_headers).json()["ok"] is True


def test_audit_endpoints_need_a_platform_role(client, services):
    tenant = sign_up(client, services)
    response = client.get("/v1/platform/audit/verify", headers=tenant.headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


@contextmanager
def _owner(database) -> Iterator[psycopg.Connection]:
    """What an attacker with the database owner's credentials has."""
    with psycopg.connect(libpq_dsn(database.url(database.owner)), autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log NO FORCE ROW LEVEL SECURITY")  # the table's owner may
        try:
            yield conn
        finally:
            conn.execute("ALTER TABLE audit_log FORCE ROW LEVEL SECURITY")


@contextmanager
def _tampering(conn: psycopg.Connection) -> Iterator[None]:
    with conn.transaction():
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        yield
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


def _verdicts(client, headers, database, settings) -> tuple[dict, subprocess.CompletedProcess]:
    return client.get("/v1/platform/audit/verify", headers=headers).json(), _verify_cli(database, settings)


def _rehashed_tail(services, from_id: int) -> list[tuple[str, str, str, int]]:
    """The tail from ``from_id`` with its first record's actor changed and every hash from
    there recomputed: a chain that verifies on its own."""
    with services.db.transaction(Scope.system()) as session:
        records = list(session.scalars(select(AuditRecord).where(AuditRecord.id >= from_id).order_by(AuditRecord.id)))
        session.expunge_all()
    records[0].actor = "user:attacker"
    rows, prev = [], records[0].prev_hash
    for record in records:
        record.prev_hash = prev
        record.hash = prev = record_hash(record)
        rows.append((record.actor, record.prev_hash, record.hash, record.id))
    return rows


def _set_rows(conn: psycopg.Connection, rows: list[tuple]) -> None:
    with _tampering(conn):
        for row in rows:
            conn.execute("UPDATE audit_log SET actor = %s, prev_hash = %s, hash = %s WHERE id = %s", row)


def _checkpoint_lines(settings) -> list[dict]:
    path = checkpoint_file(settings.data_dir)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ok(client, headers) -> bool:
    return client.get("/v1/platform/audit/verify", headers=headers).json()["ok"]


def test_checkpoint_is_signed_exported_and_verifies(client, services, settings, database, auditor_headers, caplog):
    sign_up(client, services)
    with caplog.at_level(logging.INFO, logger="api.audit.checkpoint"):
        head = take_checkpoint(services)
    assert head is not None
    line = _checkpoint_lines(settings)[-1]
    assert (line["id"], line["count"], line["head"]) == (head.id, head.count, head.head)
    assert jws.unverified_header(line["token"])["typ"] == TOKEN_TYPE
    assert any(line["token"] in message for message in caplog.messages)  # exported to the log too
    api, cli = _verdicts(client, auditor_headers, database, settings)
    assert api["ok"] is True and api["checkpoints"] >= 1
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_a_consistent_rewrite_of_the_tail_is_detected(client, services, settings, database, auditor_headers):
    tenant = sign_up(client, services)
    take_checkpoint(services)
    sign_up(client, services)  # records after the checkpoint are rewritten too
    with services.db.transaction(Scope.system()) as session:
        from_id = session.scalar(select(AuditRecord.id).where(
            AuditRecord.action == "tenant.signup", AuditRecord.tenant_id == uuid.UUID(tenant.tenant_id)))
    with _owner(database) as conn:
        original = conn.execute("SELECT actor, prev_hash, hash, id FROM audit_log WHERE id >= %s ORDER BY id",
                                (from_id,)).fetchall()
        _set_rows(conn, _rehashed_tail(services, from_id))
        try:
            with services.db.transaction(Scope.system()) as session:
                assert verify_chain(session).ok  # the hashes alone no longer tell
            api, cli = _verdicts(client, auditor_headers, database, settings)
            assert api["ok"] is False and api["reason"].startswith("checkpoint mismatch") and "rewritten" in api["reason"]
            assert cli.returncode == 1 and "rewritten" in cli.stdout
        finally:
            _set_rows(conn, original)  # restore, so the chain stays valid for the other tests
    assert _ok(client, auditor_headers) is True


def test_truncation_is_detected(client, services, settings, database, auditor_headers):
    sign_up(client, services)
    head = take_checkpoint(services)
    with _owner(database) as conn:
        newest = "SELECT id FROM audit_log ORDER BY id DESC LIMIT 3"
        conn.execute(f"CREATE TEMP TABLE cut AS SELECT * FROM audit_log WHERE id IN ({newest})")
        with _tampering(conn):
            conn.execute(f"DELETE FROM audit_log WHERE id IN ({newest})")
        try:
            api, cli = _verdicts(client, auditor_headers, database, settings)
            assert api["ok"] is False and api["reason"].startswith("truncated") and f"record {head.id}" in api["reason"]
            assert cli.returncode == 1 and "truncated" in cli.stdout
        finally:
            conn.execute("INSERT INTO audit_log SELECT * FROM cut")
    assert _ok(client, auditor_headers) is True


def test_a_forged_checkpoint_is_detected(client, services, settings, database, auditor_headers):
    sign_up(client, services)
    head = take_checkpoint(services)
    path = checkpoint_file(settings.data_dir)
    genuine = _checkpoint_lines(settings)[-1]
    claims = {"id": head.id, "count": head.count, "head": "f" * 64, "iat": genuine["iat"]}
    forged = jws.sign(claims, genuine["kid"], Ed25519PrivateKey.generate(), typ=TOKEN_TYPE)
    kept = path.read_text()
    path.write_text(kept + json.dumps({**claims, "kid": genuine["kid"], "token": forged}) + "\n")
    try:
        api, cli = _verdicts(client, auditor_headers, database, settings)
        assert api["ok"] is False and api["reason"].startswith("checkpoint signature")
        assert cli.returncode == 1 and "checkpoint signature" in cli.stdout
    finally:
        path.write_text(kept)
    assert _ok(client, auditor_headers) is True


def _run_checkpoint_task(services) -> None:
    async def defer() -> None:
        app = build_job_app(services.settings, periodic=False)
        async with app.open_async():
            await app.configure_task(AUDIT_CHECKPOINT_TASK, queue=services.settings.job_queue).defer_async(timestamp=0)

    asyncio.run(defer())
    run_queue(services)


def test_the_periodic_checkpoint_adds_nothing_while_the_head_stands_still(client, services, settings):
    sign_up(client, services)
    before = len(_checkpoint_lines(settings))
    _run_checkpoint_task(services)
    assert len(_checkpoint_lines(settings)) == before + 1
    _run_checkpoint_task(services)
    _run_checkpoint_task(services)
    assert len(_checkpoint_lines(settings)) == before + 1
    assert take_checkpoint(services) is None
