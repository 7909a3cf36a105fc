"""The audit log as the console reads it: filters, keyset pages, exports, and the chain's
last verification.

Pages go by record id (newest first; ``before``/``after`` an id), so a page of a big log costs
the same as the first one. Exports walk the filtered records in chain order, each with the
fields its hash covers, written exactly as ``api.audit.chain`` hashes them, so an auditor can
recompute every hash outside this service.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, exists, false, func, select
from sqlalchemy.orm import Session

from api.audit.chain import ChainVerdict, hashed_fields
from api.db.models import AuditRecord, Tenant

PAGE_SIZE = 50
EXPORT_BATCH = 1000
VERIFY_ACTION = "audit.verify"
EXPORT_ACTION = "audit.export"
EXPORT_FIELDS = ("id", "occurred_at", "actor", "tenant_id", "action", "resource", "source_ip", "result",
                 "request_id", "details", "prev_hash", "hash")
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditFilters:
    tenant: str = ""
    actor: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, str]:
        """The filters set, as URL parameters (and as an export's audit details)."""
        values = {"tenant": self.tenant, "actor": self.actor, "action": self.action,
                  "from": _iso(self.since), "to": _iso(self.until)}
        return {k: v for k, v in values.items() if v}

    def query_string(self, **extra: Any) -> str:
        return urlencode(self.as_dict() | {k: v for k, v in extra.items() if v is not None})


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    filters: AuditFilters
    older_than: int | None = None  # the id to page back from, when older records match
    newer_than: int | None = None  # the id to page forward from, when newer records match
    unknown_tenant: bool = False


@dataclass(frozen=True)
class LastVerification:
    record: AuditRecord
    records_since: int
    verdict: dict[str, Any] = field(default_factory=dict)


def parse_time(value: str) -> datetime | None:
    """An ISO time from a filter field (a ``datetime-local`` value is taken as UTC)."""
    if not value.strip():
        return None
    parsed = datetime.fromisoformat(value.strip())  # ValueError: the caller answers 422
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if value else ""


def _tenant_ids(db: Session, tenant: str) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(tenant)]
    except ValueError:
        return list(db.scalars(select(Tenant.id).where(Tenant.slug == tenant.lower())))


def _conditions(db: Session, filters: AuditFilters) -> tuple[list[ColumnElement[bool]], bool]:
    """The WHERE clauses of the filters, and whether the tenant filter names no tenant."""
    conditions: list[ColumnElement[bool]] = []
    unknown_tenant = False
    if filters.tenant:
        ids = _tenant_ids(db, filters.tenant)
        unknown_tenant = not ids
        conditions.append(AuditRecord.tenant_id.in_(ids) if ids else false())
    if filters.actor:
        conditions.append(AuditRecord.actor.startswith(filters.actor, autoescape=True))
    if filters.action:
        conditions.append(AuditRecord.action.startswith(filters.action, autoescape=True))
    if filters.since:
        conditions.append(AuditRecord.occurred_at >= filters.since)
    if filters.until:
        conditions.append(AuditRecord.occurred_at <= filters.until)
    return conditions, unknown_tenant


def audit_page(db: Session, filters: AuditFilters, *, before: int | None = None,
               after: int | None = None) -> AuditPage:
    """One page, newest first: the newest records, those older than ``before``, or those
    just newer than ``after``."""
    conditions, unknown_tenant = _conditions(db, filters)
    query = select(AuditRecord).where(*conditions)
    if after is not None:
        records = list(db.scalars(query.where(AuditRecord.id > after).order_by(AuditRecord.id).limit(PAGE_SIZE)))
        records.reverse()
    else:
        if before is not None:
            query = query.where(AuditRecord.id < before)
        records = list(db.scalars(query.order_by(AuditRecord.id.desc()).limit(PAGE_SIZE)))
    if not records:
        return AuditPage([], filters, unknown_tenant=unknown_tenant)
    newest, oldest = records[0].id, records[-1].id
    older = db.scalar(select(exists().where(*conditions, AuditRecord.id < oldest)))
    newer = db.scalar(select(exists().where(*conditions, AuditRecord.id > newest)))
    return AuditPage(records, filters, oldest if older else None, newest if newer else None, unknown_tenant)


def head_id(db: Session) -> int:
    return db.scalar(select(func.max(AuditRecord.id))) or 0


def export_records(db: Session, filters: AuditFilters, through_id: int) -> Iterator[AuditRecord]:
    """The filtered records up to ``through_id``, in chain order, read in batches."""
    conditions, _ = _conditions(db, filters)
    query = (select(AuditRecord).where(*conditions, AuditRecord.id <= through_id).order_by(AuditRecord.id)
             .execution_options(yield_per=EXPORT_BATCH))
    yield from db.scalars(query)


def exported_fields(record: AuditRecord) -> dict[str, Any]:
    """A record's fields as the chain hashes them, with its id and hash."""
    return {"id": record.id, **hashed_fields(record), "hash": record.hash}


def jsonl_lines(records: Iterator[AuditRecord]) -> Iterator[str]:
    for record in records:
        yield json.dumps(exported_fields(record), ensure_ascii=False, default=str) + "\n"


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character gets a quote before it."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"),
                                                            ensure_ascii=False, default=str)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(records: Iterator[AuditRecord]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flushed(row) -> str:
        writer.writerow(row)
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    yield flushed(EXPORT_FIELDS)
    for record in records:
        fields = exported_fields(record)
        yield flushed([safe_cell(fields[name]) for name in EXPORT_FIELDS])


def last_verification(db: Session) -> LastVerification | None:
    """The latest ``audit.verify`` record, with how many records the chain has gained since."""
    record = db.scalar(select(AuditRecord).where(AuditRecord.action == VERIFY_ACTION)
                       .order_by(AuditRecord.id.desc()).limit(1))
    if record is None:
        return None
    since = db.scalar(select(func.count()).where(AuditRecord.id > record.id)) or 0
    return LastVerification(record, since, record.details)


def verification_details(verdict: ChainVerdict, through_id: int) -> dict[str, Any]:
    return {**verdict.as_dict(), "through_id": through_id}
