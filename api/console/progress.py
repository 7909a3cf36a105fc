"""An operation's progress for its console page and its event stream.

Both read through the API's own handler (``get_operation``: the operation row, then its
engine events after an id), shaped for display. The stream sends each new engine event with
its id (so a browser's ``Last-Event-ID`` resumes after it), the operation's state whenever
it changes, and ``end`` once the operation is finished and every event has been sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import anyio

from api.db.models import OperationStatus
from api.operations.router import OperationOut, StackEventOut

POLL_SECONDS = 0.5
EVENTS_PER_READ = 500
KEEPALIVE_SECONDS = 15
# A stream ends after this long even if the operation has not; EventSource reconnects and resumes.
MAX_STREAM_SECONDS = 600

ReadProgress = Callable[[int], OperationOut]


def finished(operation: OperationOut) -> bool:
    return OperationStatus(operation.status).finished


def event_row(event: StackEventOut) -> dict[str, Any]:
    payload = event.payload
    urn = payload.get("urn") or ""
    return {
        "id": event.id, "step": event.step, "type": event.type, "at": event.at,
        "resource": urn.rsplit("::", 1)[-1], "resource_type": payload.get("resource_type") or "",
        "op": payload.get("op") or "", "message": payload.get("message") or _summary(payload),
    }


def _summary(payload: dict[str, Any]) -> str:
    changes = payload.get("resourceChanges") or (payload.get("data") or {}).get("resource_changes")
    return ", ".join(f"{op} {count}" for op, count in changes.items()) if isinstance(changes, dict) else ""


def step_rows(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": step["name"], "status": step["status"], "attempts": step.get("attempts", 0),
            "started_at": _time(step.get("started_at")), "finished_at": _time(step.get("finished_at")),
            "errors": step.get("errors") or [], "note": step.get("note") or "",
        }
        for step in steps
    ]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def state_of(operation: OperationOut) -> dict[str, Any]:
    """What the page's status and step list show, for the stream's ``operation`` event."""
    steps = [
        {"name": s["name"], "status": s["status"], "attempts": s["attempts"], "note": s["note"],
         "error": s["errors"][-1]["message"] if s["errors"] else ""}
        for s in step_rows(operation.steps)
    ]
    return {"status": operation.status, "current_step": operation.current_step, "error": operation.error,
            "finished": finished(operation), "finished_at": operation.finished_at, "steps": steps}


def preview_of(operation: OperationOut) -> dict[str, Any] | None:
    """The preview step's result: per-resource changes (with each property's old and new
    value) when the engine previewed an existing stack, else its change summary."""
    step = next((s for s in operation.steps if s["name"] == "preview" and s["status"] == "succeeded"), None)
    if step is None:
        return None
    result = step.get("result") or {}
    changes = result.get("changes") or {}
    resources = changes.get("resources")
    summary = changes.get("summary") if resources is not None else changes
    return {"stack": result.get("stack"), "resources": resources or [], "summary": summary or {},
            "policy_violations": result.get("policy_violations") or []}


DIFF_CLASSES = {"create": "diff-add", "delete": "diff-del", "update": "diff-upd", "replace": "diff-upd"}


def diff_class(op: str) -> str:
    return DIFF_CLASSES.get(str(op).split("-")[0], "")


def shown_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=_json_value)}\n\n"


def _json_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def progress_stream(read: ReadProgress, after: int) -> AsyncIterator[str]:
    """Events after ``after`` and state changes, polled every POLL_SECONDS, until the end.

    ``read`` loads the operation before its events: an operation seen finished has
    recorded all of them, so none is left behind when the stream ends."""
    yield "retry: 2000\n\n"
    last, shown = after, None
    started = idle_since = time.monotonic()
    while True:
        operation = await anyio.to_thread.run_sync(read, last)
        for event in operation.events:
            yield sse("progress", event_row(event), event.id)
            last = event.id
        state = state_of(operation)
        if state != shown:
            yield sse("operation", state)
            shown = state
        if operation.events:
            idle_since = time.monotonic()
        if len(operation.events) == EVENTS_PER_READ:
            continue  # more recorded already
        if state["finished"]:
            yield sse("end", {"status": operation.status})
            return
        if time.monotonic() - started > MAX_STREAM_SECONDS:
            return
        if time.monotonic() - idle_since > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            idle_since = time.monotonic()
        await anyio.sleep(POLL_SECONDS)
