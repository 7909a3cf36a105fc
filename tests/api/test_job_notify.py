"""Workers hear about a new job at once (LISTEN/NOTIFY), not at the next 5 s poll."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from api.db.session import Scope
from api.jobs.app import build_job_app
from api.jobs.enqueue import enqueue_operation


def test_enqueued_operation_notifies_the_workers_listener(settings, services):
    app = build_job_app(settings)
    operation_id, tenant_id = uuid.uuid4(), uuid.uuid4()

    async def listen() -> list[dict]:
        received: list[dict] = []
        heard = asyncio.Event()

        async def on_notification(*, channel: str, notification: dict) -> None:
            received.append(notification)
            heard.set()

        async with app.open_async():
            listener = asyncio.create_task(
                app.job_manager.listen_for_jobs(on_notification=on_notification, queues=[settings.job_queue]))
            await asyncio.sleep(0.5)
            assert not listener.done(), f"the listener stopped: {listener.exception()!r}"

            def enqueue() -> int:
                with services.db.transaction(Scope.system()) as session:
                    return enqueue_operation(session, operation_id, tenant_id, queue=settings.job_queue)

            job_id = await asyncio.to_thread(enqueue)
            try:
                await asyncio.wait_for(heard.wait(), timeout=3)
            finally:
                listener.cancel()
                with services.db.transaction(Scope.system()) as session:
                    session.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})
            return [n for n in received if n.get("job_id") == job_id]

    assert [n["type"] for n in asyncio.run(listen())] == ["job_inserted"]
