"""The audit chain: each record stores the previous record's hash and a SHA-256 over its
own canonical JSON, so editing or deleting any row breaks verification from there on.
Rewriting the whole tail consistently, or cutting it off, keeps the chain valid: signed
checkpoints kept outside the database (``api.audit.checkpoint``) anchor it.

Appends are serialized with a transaction-scoped advisory lock, so the chain stays
linear across processes; the lock is released when the appending transaction ends.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from api.db.models import AuditRecord

GENESIS_HASH = "0" * 64
ADVISORY_LOCK_KEY = 0x63616D656C  # "camel": one chain, one lock


@dataclass(frozen=True)
class AuditMeta:
    """Who did it and from where; the same for every record of one request or job."""

    actor: str
    source_ip: str | None = None
    request_id: str | None = None


def hashed_fields(record: AuditRecord) -> dict[str, Any]:
    """What a record's hash covers (``occurred_at`` in UTC ISO form): all but its id and own hash."""
    return {
        "occurred_at": record.occurred_at.astimezone(UTC).isoformat(),
        "actor": record.actor,
        "tenant_id": str(record.tenant_id) if record.tenant_id else None,
        "action": record.action,
        "resource": record.resource,
        "source_ip": record.source_ip,
        "result": record.result,
        "request_id": record.request_id,
        "details": record.details,
        "prev_hash": record.prev_hash,
    }


def _canonical(record: AuditRecord) -> bytes:
    return json.dumps(hashed_fields(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def record_hash(record: AuditRecord) -> str:
    return hashlib.sha256(_canonical(record)).hexdigest()


def append(
    session: Session,
    meta: AuditMeta,
    action: str,
    resource: str,
    *,
    tenant_id: uuid.UUID | None = None,
    result: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Add one record to the chain inside the caller's transaction."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    prev_hash = session.execute(text("SELECT audit_chain_head()")).scalar() or GENESIS_HASH
    record = AuditRecord(
        occurred_at=datetime.now(UTC),
        actor=meta.actor,
        tenant_id=tenant_id,
        action=action,
        resource=resource,
        source_ip=meta.source_ip,
        result=result,
        request_id=meta.request_id,
        details=details or {},
        prev_hash=prev_hash,
    )
    record.hash = record_hash(record)
    session.add(record)
    session.flush()
    return record


@dataclass(frozen=True)
class Anchor:
    """A signed checkpoint's claim: the chain's first ``count`` records end with record
    ``id``, whose hash is ``head``."""

    id: int
    count: int
    head: str


@dataclass(frozen=True)
class ChainVerdict:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    checkpoints: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_bad_id": self.first_bad_id, "reason": self.reason,
                "checkpoints": self.checkpoints}


def _against(anchor: Anchor, record: AuditRecord, checked: int) -> str | None:
    if record.id != anchor.id:
        return f"checkpoint mismatch: no record {anchor.id}, which a signed checkpoint holds (rows deleted)"
    if record.hash != anchor.head:
        return f"checkpoint mismatch: record {record.id} differs from its signed checkpoint (chain rewritten)"
    if checked != anchor.count:
        return (f"checkpoint mismatch: {checked} records up to record {record.id}, "
                f"its signed checkpoint counted {anchor.count} (rows deleted or inserted)")
    return None


def verify_records(records: Iterable[AuditRecord], anchors: Iterable[Anchor] = ()) -> ChainVerdict:
    """Walk the chain; each anchor (signed checkpoint) must match the record at its position,
    and the chain must reach the last one."""
    pending = sorted(anchors, key=lambda a: a.id)
    total = len(pending)
    expected_prev = GENESIS_HASH
    checked = 0
    last_id = None
    for record in records:
        if record.prev_hash != expected_prev:
            return ChainVerdict(False, checked, record.id, "prev_hash does not match the previous record (row missing or reordered)", total)
        if record_hash(record) != record.hash:
            return ChainVerdict(False, checked, record.id, "record content does not match its hash (row edited)", total)
        expected_prev = record.hash
        checked += 1
        last_id = record.id
        while pending and pending[0].id <= record.id:
            if reason := _against(pending.pop(0), record, checked):
                return ChainVerdict(False, checked, record.id, reason, total)
    if pending:
        last = pending[-1]
        return ChainVerdict(False, checked, last_id, f"truncated: the chain ends at record {last_id} ({checked} records), "
                            f"a signed checkpoint holds record {last.id} ({last.count} records)", total)
    return ChainVerdict(True, checked, checkpoints=total)


def verify_chain(session: Session, anchors: Iterable[Anchor] = ()) -> ChainVerdict:
    """Walk the whole chain; needs a system-scoped session (all tenants)."""
    records = session.scalars(select(AuditRecord).order_by(AuditRecord.id).execution_options(yield_per=500))
    return verify_records(records, anchors)
