"""The only code that reads or writes ``webhook_events`` and ``webhook_deliveries``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from mimic.core.db import Connection, Database, as_struct, load_queries
from mimic.events.schemas import DeliveryContext, DeliveryStatus, IncomingEvent, Route

queries = load_queries("mimic.events")


async def insert_event(
    conn: Connection, new_id: uuid.UUID, event: IncomingEvent, *, routed: bool
) -> bool:
    """Store the event; False when (provider, event_id) is already stored."""
    inserted = await conn.fetchval(
        queries["insert_event"],
        new_id,
        event.provider,
        event.event_type,
        event.event_id,
        event.payload_json,
        event.raw_body,
        event.signature,
        "received" if routed else "ignored",
    )
    return inserted is not None


async def find_event_id(conn: Connection, provider: str, event_id: str) -> uuid.UUID:
    found: uuid.UUID = await conn.fetchval(queries["find_event_id"], provider, event_id)
    return found


async def insert_deliveries(
    conn: Connection,
    event_uuid: uuid.UUID,
    delivery_ids: Sequence[uuid.UUID],
    routes: Sequence[Route],
    job_ids: Sequence[int],
) -> None:
    await conn.execute(
        queries["insert_deliveries"],
        event_uuid,
        list(delivery_ids),
        [route.target_service for route in routes],
        [route.task_name for route in routes],
        list(job_ids),
    )


async def claim_delivery(db: Database, delivery_id: uuid.UUID) -> DeliveryContext | None:
    """Count an attempt before the call; None when the delivery is final or unknown."""
    row = await db.fetchrow(queries["start_delivery"], delivery_id)
    if row is None:
        return None
    return as_struct(
        {**dict(row), "delivery_id": delivery_id, "payload": json.loads(row["payload"])},
        DeliveryContext,
    )


async def delivery_status(db: Database, delivery_id: uuid.UUID) -> DeliveryStatus | None:
    status: DeliveryStatus | None = await db.fetchval(queries["get_delivery_status"], delivery_id)
    return status


async def finish_delivery(
    db: Database,
    delivery_id: uuid.UUID,
    status: DeliveryStatus,
    result: dict[str, Any] | None,
    error: str | None,
) -> bool:
    """Record an attempt's outcome and roll the event up; False if it had already succeeded."""
    event_uuid = await db.fetchval(
        queries["finish_delivery"],
        delivery_id,
        status,
        json.dumps(result) if result is not None else None,
        error,
    )
    return event_uuid is not None


async def interrupt_delivery(db: Database, delivery_id: uuid.UUID, reason: str) -> None:
    """Say why an attempt cut off by a shutdown will run again."""
    await db.execute(queries["interrupt_delivery"], delivery_id, reason)
