"""The console's audit log: who may read it, filters, keyset pages, the chain's verification
state, and the CSV / JSON Lines exports (their format, hashes and injection safety)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from datetime import UTC, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.audit.chain import AuditMeta, append
from api.audit.checkpoint import verify_platform_chain
from api.auth.roles import PlatformRole
from api.db.models import AuditRecord
from api.db.session import Scope
from api.services import Services
from tests.api.console_support import console_login, forged_post, platform_viewer, post_form
from tests.api.test_sessions import new_organisation

ROW = re.compile(r'<tr id="audit-(\d+)">')
ACTION_CELL = re.compile(r"<td><code>([^<]+)</code></td>")


def shown_ids(page) -> list[int]:
    return [int(found) for found in ROW.findall(page.text)]


def add_records(services: Services, action: str, count: int = 1, **fields) -> list[int]:
    with services.db.transaction(Scope.system()) as session:
        meta = AuditMeta(fields.pop("actor", "system:console-test"))
        return [append(session, meta, action, fields.get("resource", f"thing:{n}"),
                       tenant_id=fields.get("tenant_id"), details=fields.get("details")).id for n in range(count)]


def records(services: Services, *conditions) -> list[AuditRecord]:
    with services.db.transaction(Scope.system()) as session:
        found = list(session.scalars(select(AuditRecord).where(*conditions).order_by(AuditRecord.id)))
        session.expunge_all()
        return found


def test_a_tenant_admin_can_open_neither_the_log_nor_its_exports_nor_verify(client: TestClient, services: Services):
    tenant = new_organisation(client, services)
    assert console_login(client, tenant.email).status_code == 303
    exports_before = len(records(services, AuditRecord.action == "audit.export"))
    for path in ("/console/audit", "/console/audit/export.csv", "/console/audit/export.jsonl"):
        refused = client.get(path)
        assert refused.status_code == 403 and not ROW.search(refused.text), path
    verified_before = len(records(services, AuditRecord.action == "audit.verify"))
    assert forged_post(client, "/console/audit/verify").status_code == 403
    assert len(records(services, AuditRecord.action == "audit.verify")) == verified_before
    assert len(records(services, AuditRecord.action == "audit.export")) == exports_before
    assert 'href="/console/audit"' not in client.get("/console/tenants").text


def test_filters_by_tenant_slug_or_id_actor_and_action_prefix(client: TestClient, services: Services):
    first, second = new_organisation(client, services), new_organisation(client, services)
    tag = uuid.uuid4().hex[:8]
    mine = add_records(services, f"test.{tag}.made", 2, tenant_id=uuid.UUID(first.tenant_id), actor=f"user:{tag}-a")
    theirs = add_records(services, f"test.{tag}.other", 1, tenant_id=uuid.UUID(second.tenant_id), actor=f"user:{tag}-b")
    platform_viewer(client, services, PlatformRole.AUDITOR)

    by_slug = shown_ids(client.get("/console/audit", params={"tenant": first.slug}))
    by_id = shown_ids(client.get("/console/audit", params={"tenant": first.tenant_id}))
    assert set(mine) <= set(by_slug) and not set(theirs) & set(by_slug) and by_slug == by_id
    assert shown_ids(client.get("/console/audit", params={"action": f"test.{tag}."})) == [theirs[0], *reversed(mine)]
    assert shown_ids(client.get("/console/audit", params={"action": f"test.{tag}.oth"})) == theirs
    assert shown_ids(client.get("/console/audit", params={"actor": f"user:{tag}-a"})) == list(reversed(mine))
    unknown = client.get("/console/audit", params={"tenant": "no-such-tenant-slug"})
    assert unknown.status_code == 200 and shown_ids(unknown) == [] and "No tenant has the slug" in unknown.text
    actions = ACTION_CELL.findall(client.get("/console/audit", params={"action": "auth."}).text)
    assert actions and all(action.startswith("auth.") for action in actions)


def test_filters_by_time_range(client: TestClient, services: Services):
    tag = uuid.uuid4().hex[:8]
    (made,) = add_records(services, f"test.{tag}.timed")
    (record,) = records(services, AuditRecord.id == made)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    at = record.occurred_at.astimezone(UTC).replace(tzinfo=None)
    within = {"action": f"test.{tag}.", "from": (at - timedelta(seconds=2)).isoformat(timespec="seconds"),
              "to": (at + timedelta(seconds=2)).isoformat(timespec="seconds")}
    assert shown_ids(client.get("/console/audit", params=within)) == [made]
    later = {**within, "from": (at + timedelta(minutes=1)).isoformat(timespec="minutes")}
    assert shown_ids(client.get("/console/audit", params=later)) == []
    earlier = {"action": f"test.{tag}.", "to": (at - timedelta(minutes=1)).isoformat(timespec="minutes")}
    assert shown_ids(client.get("/console/audit", params=earlier)) == []
    bad = client.get("/console/audit", params={"from": "yesterday"})
    assert bad.status_code == 422 and "2026-12-06T18:00" in bad.text


def test_pages_go_by_id_newest_first_and_keep_the_filters(client: TestClient, services: Services):
    tag = uuid.uuid4().hex[:8]
    made = add_records(services, f"test.{tag}.paged", 63)
    platform_viewer(client, services, PlatformRole.AUDITOR)
    first = client.get("/console/audit", params={"action": f"test.{tag}."})
    assert shown_ids(first) == list(reversed(made))[:50]
    older_link = re.search(r'id="older" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    assert f"action=test.{tag}." in older_link and f"before={made[13]}" in older_link
    assert 'id="newer"' not in first.text
    second = client.get(older_link)
    assert shown_ids(second) == list(reversed(made))[50:]
    assert 'id="older"' not in second.text
    newer_link = re.search(r'id="newer" href="([^"]+)"', second.text).group(1).replace("&amp;", "&")
    assert shown_ids(client.get(newer_link)) == shown_ids(first)
    assert client.get("/console/audit", params={"before": 0}).status_code == 422


def test_verify_now_records_the_verdict_that_the_page_then_shows(client: TestClient, services: Services):
    email = platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/audit")
    assert 'id="verify-now"' in page.text  # verifying changes nothing: auditors may press it
    assert post_form(client, "/console/audit", "/console/audit/verify").status_code == 303
    (verified,) = records(services, AuditRecord.action == "audit.verify")[-1:]
    with services.db.transaction(Scope.system()) as session:
        expected = verify_platform_chain(session, services).as_dict()
    assert verified.details["ok"] == expected["ok"] and verified.details["checkpoints"] == expected["checkpoints"]
    assert verified.details["through_id"] < verified.id
    if verified.details["ok"]:
        assert verified.details["checked"] == len(records(services, AuditRecord.id <= verified.details["through_id"]))
    shown = client.get("/console/audit")
    state = re.search(r'id="chain-verdict">([^<]+)', shown.text).group(1)
    assert ("Chain verified" if verified.details["ok"] else "Chain broken") in state
    if verified.details["ok"]:
        assert f"up to record {verified.details['through_id']}" in shown.text
    assert "by user:" in shown.text and email


def test_exports_stream_the_filtered_records_with_their_hashes_and_are_audited(client: TestClient, services: Services):
    tag = uuid.uuid4().hex[:8]
    made = add_records(services, f"test.{tag}.exported", 3, details={"note": "ünïcode", "n": [1, 2]})
    platform_viewer(client, services, PlatformRole.AUDITOR)
    lines = client.get("/console/audit/export.jsonl", params={"action": f"test.{tag}."})
    assert lines.status_code == 200 and lines.headers["content-type"].startswith("application/jsonl")
    assert re.fullmatch(r'attachment; filename="cameleer-audit-\d{8}T\d{6}Z\.jsonl"', lines.headers["content-disposition"])
    exported = [json.loads(line) for line in lines.text.splitlines()]
    assert [r["id"] for r in exported] == made
    for record in exported:  # re-verified with nothing but the standard library
        covered = {k: v for k, v in record.items() if k not in ("id", "hash")}
        canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert hashlib.sha256(canonical).hexdigest() == record["hash"]
    table = client.get("/console/audit/export.csv", params={"action": f"test.{tag}."})
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    assert table.headers["content-disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [int(r["id"]) for r in rows] == made
    assert [r["hash"] for r in rows] == [r["hash"] for r in exported]
    assert json.loads(rows[0]["details"]) == {"note": "ünïcode", "n": [1, 2]}
    audited = records(services, AuditRecord.action == "audit.export")[-2:]
    assert [r.details["format"] for r in audited] == ["jsonl", "csv"]
    assert all(r.details["filters"] == {"action": f"test.{tag}."} and r.details["through_id"] >= made[-1]
               for r in audited)


def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote(client: TestClient, services: Services):
    tag = uuid.uuid4().hex[:8]
    dangerous = ["=HYPERLINK(\"http://evil.example\")", "+SUM(1,2)", "-2+3", "@cmd", "\tx", "plain"]
    for value in dangerous:
        add_records(services, f"test.{tag}.csv", actor=value[:80], resource=value)
    platform_viewer(client, services, PlatformRole.OPERATOR)
    rows = list(csv.DictReader(io.StringIO(client.get("/console/audit/export.csv",
                                                      params={"action": f"test.{tag}."}).text)))
    assert [r["resource"] for r in rows] == ["'" + v for v in dangerous[:-1]] + ["plain"]
    assert [r["actor"] for r in rows] == ["'" + v for v in dangerous[:-1]] + ["plain"]
    jsonl = client.get("/console/audit/export.jsonl", params={"action": f"test.{tag}."}).text
    assert [json.loads(line)["resource"] for line in jsonl.splitlines()] == dangerous  # JSON stays exact


def test_the_page_links_exports_with_the_same_filters(client: TestClient, services: Services):
    platform_viewer(client, services, PlatformRole.AUDITOR)
    page = client.get("/console/audit", params={"action": "tenant.", "actor": "user:"})
    assert page.status_code == 200
    assert 'href="/console/audit/export.csv?actor=user%3A&amp;action=tenant."' in page.text
    assert "<script>" not in page.text and "style=" not in page.text
    assert client.get("/console/audit/export.xml").status_code == 404
