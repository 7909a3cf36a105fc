"""Engine progress: stack events from the automation layer, stored per operation step."""

from __future__ import annotations

import json
import uuid

from api.db.models import StackEvent
from api.db.session import Database, Scope
from api.stacks.driver import EventSink, StackEventData

MAX_PAYLOAD_BYTES = 8192


def _bounded(payload: dict) -> dict:
    encoded = json.dumps(payload, default=str)
    if len(encoded) <= MAX_PAYLOAD_BYTES:
        return json.loads(encoded)
    return {"truncated": True, "preview": encoded[:MAX_PAYLOAD_BYTES]}


def event_sink(db: Database, tenant_id: uuid.UUID, operation_id: uuid.UUID, step: str) -> EventSink:
    """A callback for the driver; each event is committed at once so progress is visible live."""

    def record(event: StackEventData) -> None:
        with db.transaction(Scope.tenant(tenant_id)) as session:
            session.add(
                StackEvent(
                    tenant_id=tenant_id,
                    operation_id=operation_id,
                    step=step,
                    event_type=event.type[:64],
                    payload=_bounded(event.payload),
                )
            )

    return record
