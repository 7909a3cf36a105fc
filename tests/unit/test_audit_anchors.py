"""The audit chain's walk against signed checkpoints (anchors), without a database."""

from __future__ import annotations

from datetime import UTC, datetime

from api.audit.chain import GENESIS_HASH, Anchor, record_hash, verify_records
from api.db.models import AuditRecord


def _chain(actions: list[str], start_id: int = 1, prev: str = GENESIS_HASH) -> list[AuditRecord]:
    records = []
    for offset, action in enumerate(actions):
        record = AuditRecord(id=start_id + offset, occurred_at=datetime(2026, 1, 1, tzinfo=UTC), actor="system:test",
                             tenant_id=None, action=action, resource="r", source_ip=None, result="success",
                             request_id=None, details={}, prev_hash=prev)
        record.hash = prev = record_hash(record)
        records.append(record)
    return records


def _anchor(record: AuditRecord, count: int) -> Anchor:
    return Anchor(id=record.id, count=count, head=record.hash)


def test_a_chain_holding_its_checkpoints_verifies():
    chain = _chain(["a", "b", "c", "d"])
    verdict = verify_records(chain, [_anchor(chain[1], 2), _anchor(chain[3], 4)])
    assert verdict.ok and verdict.checked == 4 and verdict.checkpoints == 2


def test_a_consistent_tail_rewrite_is_caught_by_a_checkpoint():
    chain = _chain(["a", "b", "c", "d"])
    anchors = [_anchor(chain[2], 3)]
    rewritten = chain[:1] + _chain(["B", "c", "d"], start_id=2, prev=chain[0].hash)
    assert verify_records(rewritten).ok  # the hashes alone cannot tell
    verdict = verify_records(rewritten, anchors)
    assert not verdict.ok and verdict.first_bad_id == 3 and "rewritten" in verdict.reason


def test_truncation_and_deleted_rows_are_caught():
    chain = _chain(["a", "b", "c", "d"])
    anchors = [_anchor(chain[3], 4)]
    truncated = verify_records(chain[:2], anchors)
    assert not truncated.ok and truncated.reason.startswith("truncated") and truncated.first_bad_id == 2
    refilled = chain[:2] + _chain(["x", "y", "z"], start_id=5, prev=chain[1].hash)
    deleted = verify_records(refilled, anchors)
    assert not deleted.ok and "no record 4" in deleted.reason


def test_a_count_that_does_not_match_is_caught():
    chain = _chain(["a", "b"])
    verdict = verify_records(chain, [Anchor(id=2, count=3, head=chain[1].hash)])
    assert not verdict.ok and "counted 3" in verdict.reason
