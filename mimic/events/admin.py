"""What operators do with the gateway: look up events, replay them, retry deliveries."""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from mimic.core.db import Connection, Database
from mimic.core.errors import BadRequest, Conflict, NotFound
from mimic.core.jobs import QUEUE_MAINTENANCE, JobToDefer, defer_jobs
from mimic.core.pagination import after, aware, page
from mimic.events import repository
from mimic.events.gateway import route_set
from mimic.events.ingest import enqueue_routes
from mimic.events.routes import Router
from mimic.events.schemas import (
    BulkRetryIn,
    BulkRetryOut,
    DeliveryPage,
    EventDetail,
    EventPage,
    Replayed,
    Retried,
)

logger = logging.getLogger(__name__)

BULK_RETRY_TASK = "mimic.tasks.bulk_retry_deliveries"
BULK_BATCH = 200


async def list_events(
    db: Database,
    *,
    provider: str | None,
    status: str | None,
    event_type: str | None,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    limit: int,
    cursor: str | None,
) -> EventPage:
    rows = await repository.list_events(
        db,
        provider=provider,
        status=status,
        event_type=event_type,
        since=aware(since),
        until=aware(until),
        limit=limit + 1,
        after=after(cursor),
    )
    items, next_cursor = page(rows, limit, lambda e: (e.received_at, e.id))
    return EventPage(items=items, next_cursor=next_cursor)


async def get_event(
    db: Database, event_id: str, provider: str | None, *, primary: Database | None = None
) -> EventDetail:
    """By Mimic's uuid, or by the provider's own id when ``provider`` is given. ``db`` may be
    a replica: an event it does not have yet (just received) is read from ``primary``."""
    for source in (db, primary) if primary is not None and primary is not db else (db,):
        if provider is not None:
            found = await repository.get_event_by_provider_id(source, provider, event_id)
        else:
            found = await repository.get_event(source, parse_uuid(event_id, "event_id"))
        if found is not None:
            return found
    raise NotFound(f"no event {event_id}" + (f" from {provider}" if provider else ""))


async def raw_body(db: Database, event_uuid: uuid.UUID) -> bytes | None:
    """The event's body as received (the signature was made over these bytes)."""
    return await repository.get_raw_body(db, event_uuid)


def parse_uuid(value: str, name: str, *, by_provider: bool = True) -> uuid.UUID:
    """``by_provider``: the route also takes the provider's own id with ?provider=."""
    try:
        return uuid.UUID(value)
    except ValueError:
        hint = (
            " (or pass ?provider= with the provider's own id)"
            if by_provider
            else "; GET /api/v1/gateway/webhooks/events/<provider's id>?provider=stripe|resend"
            "|postmark answers it"
        )
        raise BadRequest(f"{name} must be Mimic's uuid{hint}", code=f"invalid_{name}") from None


async def list_deliveries(
    db: Database,
    *,
    status: str | None,
    target: str | None,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    limit: int,
    cursor: str | None,
) -> DeliveryPage:
    rows = await repository.list_deliveries(
        db,
        status=status,
        target=target,
        since=aware(since),
        until=aware(until),
        limit=limit + 1,
        after=after(cursor),
    )
    items, next_cursor = page(rows, limit, lambda d: (d.created_at, d.id))
    return DeliveryPage(items=items, next_cursor=next_cursor)


async def replay(db: Database, router: Router, event_uuid: uuid.UUID) -> Replayed:
    """Route the event again by today's routes: new deliveries and jobs, in one transaction.
    Earlier deliveries stay, marked superseded."""
    stored = await route_set(db, router, refresh=True)
    async with db.transaction() as conn:
        # Deliveries first, then the event: the order a finishing delivery takes its locks in.
        await repository.supersede_deliveries(conn, event_uuid)
        found = await repository.lock_event(conn, event_uuid)
        if found is None:
            raise NotFound(f"no event {event_uuid}")
        provider, event_type, payload = found
        routes = router.routes_for(stored, provider, event_type, payload)
        await repository.restart_event(conn, event_uuid, "received" if routes else "ignored")
        delivery_ids = await enqueue_routes(conn, event_uuid, routes)
    return Replayed(event_id=event_uuid, routes=routes, delivery_ids=delivery_ids)


async def retry_delivery(db: Database, delivery_id: uuid.UUID) -> Retried:
    """One more attempt for a failed delivery: a fresh budget, the same Idempotency-Key."""
    async with db.transaction() as conn:
        found = await repository.lock_delivery(conn, delivery_id)
        if found is None:
            raise NotFound(f"no delivery {delivery_id}")
        if found.status != "failed" or found.superseded:
            why = "was replaced by a replay" if found.superseded else f"is {found.status}"
            raise Conflict(
                f"only a failed delivery can be retried; this one {why}",
                code="delivery_not_failed",
            )
        retryable = repository.Retryable(found.id, found.event_id, found.task_name)
        [job_id] = await _retry(conn, [retryable])
    return Retried(delivery_id=delivery_id, job_id=job_id)


async def _retry(conn: Connection, rows: list[repository.Retryable]) -> list[int]:
    job_ids = await repository.defer_deliveries(conn, [(r.id, r.task_name) for r in rows])
    await repository.reset_deliveries(conn, [r.id for r in rows], job_ids)
    return job_ids


async def start_bulk_retry(db: Database, filters: BulkRetryIn, key_id: str) -> BulkRetryOut:
    """Queue a bulk retry; it runs as a job, in batches, and reports its progress."""
    bulk_id = uuid.uuid4()
    args = {
        "target": filters.target,
        "since": aware(filters.since),
        "until": aware(filters.until),
        "limit": filters.limit,
    }
    async with db.transaction() as conn:
        [job_id] = await defer_jobs(
            conn,
            [
                JobToDefer(
                    task_name=BULK_RETRY_TASK,
                    queue=QUEUE_MAINTENANCE,
                    args={"bulk_id": str(bulk_id)},
                )
            ],
        )
        await repository.create_bulk_retry(
            conn, bulk_id, {"status": "failed", **args}, key_id, job_id
        )
    found = await repository.get_bulk_retry(db, bulk_id)
    assert found is not None
    return found


async def bulk_retry_progress(db: Database, bulk_id: uuid.UUID) -> BulkRetryOut:
    found = await repository.get_bulk_retry(db, bulk_id)
    if found is None:
        raise NotFound(f"no bulk retry {bulk_id}")
    return found


async def run_bulk_retry(db: Database, bulk_id: uuid.UUID) -> int:
    """The job's body: pick the matching failed deliveries, retry them in batches."""
    bulk = await bulk_retry_progress(db, bulk_id)
    if bulk.status == "done":
        return bulk.retried
    filters = bulk.filters
    ids = await repository.pick_failed(
        db,
        target=filters.get("target"),
        since=_time(filters.get("since")),
        until=_time(filters.get("until")),
        limit=int(filters.get("limit") or 0),
    )
    retried = bulk.retried
    await repository.update_bulk_retry(db, bulk_id, "running", len(ids), retried)
    for start in range(0, len(ids), BULK_BATCH):
        async with db.transaction() as conn:
            rows = await repository.lock_failed(conn, ids[start : start + BULK_BATCH])
            if rows:
                await _retry(conn, rows)
        retried += len(rows)
        await repository.update_bulk_retry(db, bulk_id, "running", len(ids), retried)
    await repository.update_bulk_retry(db, bulk_id, "done", len(ids), retried)
    logger.info("bulk retry %s: %d of %d deliveries retried", bulk_id, retried, len(ids))
    return retried


def _time(value: Any) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
