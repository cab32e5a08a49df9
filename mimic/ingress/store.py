"""The exactly-once handoff: event row, delivery rows and their jobs in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from mimic.db import Database, load_queries
from mimic.errors import BadRequest
from mimic.jobs import QUEUE_WEBHOOKS, JobToDefer, defer_jobs

queries = load_queries("mimic.ingress")


class Route(msgspec.Struct, frozen=True):
    """Where one event goes: a target service and the task that calls it."""

    target_service: str
    task_name: str


class IncomingEvent(msgspec.Struct, kw_only=True, frozen=True):
    provider: str
    event_id: str
    event_type: str
    raw_body: bytes
    #: The parsed payload as JSON text (Postgres stores it as jsonb).
    payload_json: str
    signature: str | None


class Accepted(msgspec.Struct, kw_only=True, frozen=True):
    event_id: uuid.UUID
    duplicate: bool


async def ingest(db: Database, event: IncomingEvent, routes: Sequence[Route]) -> Accepted:
    """Store a verified event and enqueue one job per route, or nothing for a duplicate.

    Returns only after COMMIT, so a 2xx built from the result means the event is durable.
    A concurrent duplicate waits on the unique index and then sees the committed row.
    """
    new_id = uuid.uuid4()
    try:
        return await _store(db, new_id, event, routes)
    except asyncpg.DataError as exc:
        # JSON that msgspec parses but Postgres cannot store (e.g. \u0000 in a string).
        raise BadRequest(
            f"the event cannot be stored: {exc.__class__.__name__}", code="invalid_json"
        ) from None


async def _store(
    db: Database, new_id: uuid.UUID, event: IncomingEvent, routes: Sequence[Route]
) -> Accepted:
    async with db.transaction() as conn:
        inserted = await conn.fetchval(
            queries["insert_event"],
            new_id,
            event.provider,
            event.event_type,
            event.event_id,
            event.payload_json,
            event.raw_body,
            event.signature,
            "received" if routes else "ignored",
        )
        if inserted is None:
            existing = await conn.fetchval(queries["find_event_id"], event.provider, event.event_id)
            return Accepted(event_id=existing, duplicate=True)
        if routes:
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
            await conn.execute(
                queries["insert_deliveries"],
                new_id,
                delivery_ids,
                [route.target_service for route in routes],
                [route.task_name for route in routes],
                job_ids,
            )
    return Accepted(event_id=new_id, duplicate=False)
