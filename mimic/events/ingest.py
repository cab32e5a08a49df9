"""The exactly-once handoff: event row, delivery rows and their jobs in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from mimic.core.db import Connection, Database
from mimic.core.errors import BadRequest, InvalidInput
from mimic.core.jobs import QUEUE_WEBHOOKS, JobToDefer, defer_jobs
from mimic.events import repository
from mimic.events.schemas import IncomingEvent, Route, WebhookAccepted


async def ingest(db: Database, event: IncomingEvent, routes: Sequence[Route]) -> WebhookAccepted:
    """Store a verified event and enqueue one job per route, or nothing for a duplicate.

    Returns only after COMMIT, so a 2xx built from the result means the event is durable.
    A concurrent duplicate waits on the unique index and then sees the committed row.
    """
    try:
        return await _store(db, event, routes)
    except InvalidInput as exc:
        # JSON that msgspec parses but Postgres cannot store (e.g. \u0000 in a string).
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "DataError"
        raise BadRequest(f"the event cannot be stored: {cause}", code="invalid_json") from None


async def _store(db: Database, event: IncomingEvent, routes: Sequence[Route]) -> WebhookAccepted:
    new_id = uuid.uuid4()
    async with db.transaction() as conn:
        if not await repository.insert_event(conn, new_id, event, routed=bool(routes)):
            existing = await repository.find_event_id(conn, event.provider, event.event_id)
            return WebhookAccepted(event_id=existing, duplicate=True)
        await enqueue_routes(conn, new_id, routes)
    return WebhookAccepted(event_id=new_id, duplicate=False)


async def enqueue_routes(
    conn: Connection, event_uuid: uuid.UUID, routes: Sequence[Route]
) -> list[uuid.UUID]:
    """One delivery and one job per route, on the caller's transaction."""
    if not routes:
        return []
    delivery_ids = [uuid.uuid4() for _ in routes]
    job_ids = await defer_jobs(
        conn,
        [
            JobToDefer(
                task_name=route.task_name,
                queue=QUEUE_WEBHOOKS,
                args={"delivery_id": str(delivery_id)},
            )
            for route, delivery_id in zip(routes, delivery_ids, strict=True)
        ],
    )
    await repository.insert_deliveries(conn, event_uuid, delivery_ids, routes, job_ids)
    return delivery_ids
