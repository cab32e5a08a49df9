"""The only code that reads or writes ``webhook_events`` and ``webhook_deliveries``."""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from mimic.core.db import Connection, Database, as_struct, as_structs, load_queries
from mimic.core.errors import DatabaseError, MimicError
from mimic.core.jobs import QUEUE_WEBHOOKS, JobToDefer, defer_jobs
from mimic.core.settings import PartitionInterval
from mimic.events.schemas import (
    BulkRetryOut,
    BulkRetryStatus,
    DeliveryContext,
    DeliveryStatus,
    DeliverySummary,
    EventDetail,
    EventStatus,
    EventSummary,
    IncomingEvent,
    Route,
)

logger = logging.getLogger(__name__)
queries = load_queries("mimic.events")

#: The most deliveries one job carries (those of one commit batch to the same destination).
GROUP_MAX = 50


class Stored(msgspec.Struct, frozen=True):
    """What store_events did: the new ids inserted, and the stored ids it saw for the rest;
    ``stale``: nothing was stored, the routes were matched at an old gateway version."""

    inserted: set[uuid.UUID]
    existing: dict[tuple[str, str], uuid.UUID]
    stale: bool = False


async def store_events(
    db: Connection | Database,
    events: Sequence[tuple[uuid.UUID, IncomingEvent, bool]],
    deliveries: Sequence[tuple[uuid.UUID, uuid.UUID, Route]],
    version: int,
) -> Stored:
    """Store (new id, event, routed) rows and, for the events inserted, their (event id,
    delivery id, route) deliveries with one job each: one statement, so one transaction.
    The caller passes no two events with the same key; ``version`` is the gateway version the
    routes were matched at (nothing is stored if it has moved)."""
    rows = await db.fetch(
        queries["store_events"],
        [new_id for new_id, _, _ in events],
        [e.provider for _, e, _ in events],
        [e.event_type for _, e, _ in events],
        [e.event_id for _, e, _ in events],
        [e.payload_json for _, e, _ in events],
        [e.raw_body for _, e, _ in events],
        [e.signature for _, e, _ in events],
        ["received" if routed else "ignored" for _, _, routed in events],
        [event for event, _, _ in deliveries],
        [delivery for _, delivery, _ in deliveries],
        [route.target_service for _, _, route in deliveries],
        [route.task_name for _, _, route in deliveries],
        QUEUE_WEBHOOKS,
        version,
        [route.route_id for _, _, route in deliveries],
        [route.path for _, _, route in deliveries],
        [route.body for _, _, route in deliveries],
        GROUP_MAX,
    )
    if any(row["kind"] == "stale" for row in rows):
        return Stored(inserted=set(), existing={}, stale=True)
    return Stored(
        inserted={row["id"] for row in rows if row["kind"] == "new"},
        existing={
            (row["provider"], row["event_id"]): row["id"] for row in rows if row["kind"] == "old"
        },
    )


async def defer_deliveries(
    conn: Connection, deliveries: Sequence[tuple[uuid.UUID, str]]
) -> list[int]:
    """Jobs for (delivery id, task name) pairs, on the caller's transaction: those of one task
    share a job, up to GROUP_MAX each (as at ingest). Returns each delivery's job
    id, in order."""
    groups: dict[str, list[list[uuid.UUID]]] = {}
    for delivery_id, task in deliveries:
        chunks = groups.setdefault(task, [[]])
        if len(chunks[-1]) == GROUP_MAX:
            chunks.append([])
        chunks[-1].append(delivery_id)
    planned = [(task, chunk) for task, chunks in groups.items() for chunk in chunks]
    job_ids = await defer_jobs(
        conn,
        [
            JobToDefer(
                task_name=task,
                queue=QUEUE_WEBHOOKS,
                args=(
                    {"delivery_id": str(chunk[0])}
                    if len(chunk) == 1
                    else {"delivery_ids": [str(d) for d in chunk]}
                ),
            )
            for task, chunk in planned
        ],
    )
    owner = {d: job for (_, chunk), job in zip(planned, job_ids, strict=True) for d in chunk}
    return [owner[delivery_id] for delivery_id, _ in deliveries]


async def find_event_ids(
    conn: Connection | Database, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """Our ids for (provider, event_id) keys that are stored."""
    rows = await conn.fetch(queries["find_event_ids"], [p for p, _ in keys], [e for _, e in keys])
    return {(row["provider"], row["event_id"]): row["id"] for row in rows}


async def insert_deliveries(
    conn: Connection,
    deliveries: Sequence[tuple[uuid.UUID, uuid.UUID, Route]],
    job_ids: Sequence[int],
) -> None:
    """(event id, delivery id, route) rows, each with its job."""
    await conn.execute(
        queries["insert_deliveries"],
        [event for event, _, _ in deliveries],
        [delivery for _, delivery, _ in deliveries],
        [route.target_service for _, _, route in deliveries],
        [route.task_name for _, _, route in deliveries],
        list(job_ids),
        [route.route_id for _, _, route in deliveries],
        [route.path for _, _, route in deliveries],
        [route.body for _, _, route in deliveries],
    )


async def claim_deliveries(
    conn: Connection | Database, asked: Sequence[tuple[uuid.UUID, int | None]]
) -> dict[uuid.UUID, DeliveryContext | Exception]:
    """Count an attempt of each (delivery, job) before its call (one statement), if that job
    owns the delivery (None: any); a delivery that is final, unknown or another job's is
    missing from the answer. A row that cannot be read is answered with the exception, for
    its caller alone."""
    claimed: dict[uuid.UUID, DeliveryContext | Exception] = {}
    ordered = sorted(set(asked), key=lambda a: (a[0], a[1] or 0))
    rows = await conn.fetch(
        queries["claim_deliveries"], [i for i, _ in ordered], [j for _, j in ordered]
    )
    for row in rows:
        try:
            claimed[row["delivery_id"]] = as_struct(
                {**dict(row), "payload": json.loads(row["payload"])}, DeliveryContext
            )
        except Exception as exc:
            claimed[row["delivery_id"]] = exc
    return claimed


async def delivery_status(db: Database, delivery_id: uuid.UUID) -> DeliveryStatus | None:
    status: DeliveryStatus | None = await db.fetchval(queries["get_delivery_status"], delivery_id)
    return status


class Finished(msgspec.Struct, frozen=True):
    delivery_id: uuid.UUID
    status: DeliveryStatus
    result: dict[str, Any] | None
    error: str | None


async def finish_deliveries(
    conn: Connection | Database, finished: Sequence[Finished]
) -> set[uuid.UUID]:
    """Record attempts' outcomes and roll their events up (one statement); returns the ids
    recorded (one that had already succeeded is left alone)."""
    ordered = sorted(finished, key=lambda f: f.delivery_id)
    done = await conn.fetchval(
        queries["finish_deliveries"],
        [f.delivery_id for f in ordered],
        [f.status for f in ordered],
        [json.dumps(f.result) if f.result is not None else None for f in ordered],
        [f.error for f in ordered],
    )
    return set(done or ())


async def set_job(conn: Connection, delivery_id: uuid.UUID, job_id: int) -> None:
    """The job that carries the delivery's next attempt (it moved to a job of its own)."""
    await conn.execute(queries["set_delivery_job"], delivery_id, job_id)


async def release_attempt(db: Database, delivery_id: uuid.UUID, reason: str) -> None:
    """An attempt that was not made after all (rate limit, open circuit): not counted."""
    await db.execute(queries["release_attempt"], delivery_id, reason)


async def park(db: Database, delivery_id: uuid.UUID) -> None:
    """The delivery's destination is paused: it waits, without a job, until a resume."""
    await db.execute(queries["park_delivery"], delivery_id)


async def lock_paused(conn: Connection, target: str, limit: int) -> list[Retryable]:
    return as_structs(await conn.fetch(queries["lock_paused"], target, limit), Retryable)


async def unpause(conn: Connection, ids: Sequence[uuid.UUID], job_ids: Sequence[int]) -> None:
    await conn.execute(queries["unpause"], list(ids), list(job_ids))


async def paused_of_active(db: Database) -> list[str]:
    return [row["target_service"] for row in await db.fetch(queries["paused_of_active"])]


async def count_unfinished(conn: Connection | Database, target: str) -> int:
    return int(await conn.fetchval(queries["count_unfinished"], target))


async def fail_unfinished(conn: Connection, target: str, reason: str) -> int:
    """Fail a destination's unfinished deliveries and roll their events up."""
    events = [
        row["event_id"] for row in await conn.fetch(queries["fail_unfinished"], target, reason)
    ]
    for event_uuid in sorted(set(events)):
        await conn.execute(queries["roll_up_event"], event_uuid)
    return len(events)


async def interrupt_delivery(db: Database, delivery_id: uuid.UUID, reason: str) -> None:
    """Say why an attempt cut off by a shutdown will run again."""
    await db.execute(queries["interrupt_delivery"], delivery_id, reason)


# --- admin reads and writes ---------------------------------------------------------------------


async def list_events(
    db: Database,
    *,
    provider: str | None,
    status: str | None,
    event_type: str | None,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    limit: int,
    after: tuple[datetime.datetime | None, uuid.UUID | None],
) -> list[EventSummary]:
    rows = await db.fetch_filtered(
        queries["list_events"], provider, status, event_type, since, until, limit, *after
    )
    return as_structs(rows, EventSummary)


async def get_event(db: Database, event_uuid: uuid.UUID) -> EventDetail | None:
    row = await db.fetchrow(queries["get_event"], event_uuid)
    return await _detail(db, row) if row is not None else None


async def get_event_by_provider_id(
    db: Database, provider: str, event_id: str
) -> EventDetail | None:
    row = await db.fetchrow(queries["get_event_by_provider_id"], provider, event_id)
    return await _detail(db, row) if row is not None else None


async def _detail(db: Database, row: asyncpg.Record) -> EventDetail:
    deliveries = [
        {**dict(d), "result": json.loads(d["result"]) if d["result"] else None}
        for d in await db.fetch(queries["event_deliveries"], row["id"])
    ]
    matched = [
        {"route_id": d["route_id"], "name": d["route_name"], "destination": d["target_service"]}
        for d in deliveries
        if d["route_id"] is not None and not d["superseded"]
    ]
    fields = {
        **dict(row),
        "payload": json.loads(row["payload"]),
        "deliveries": deliveries,
        "matched_routes": matched,
    }
    return as_struct(fields, EventDetail)


async def get_raw_body(db: Database, event_uuid: uuid.UUID) -> bytes | None:
    """The event's body as received, byte for byte."""
    raw: bytes | None = await db.fetchval(queries["get_raw_body"], event_uuid)
    return raw


async def lock_event(
    conn: Connection, event_uuid: uuid.UUID
) -> tuple[str, str, dict[str, Any]] | None:
    """(provider, event type, payload) of an event, locked for a replay; None if unknown."""
    row = await conn.fetchrow(queries["lock_event_for_replay"], event_uuid)
    if row is None:
        return None
    return row["provider"], row["event_type"], json.loads(row["payload"])


async def supersede_deliveries(conn: Connection, event_uuid: uuid.UUID) -> None:
    await conn.execute(queries["supersede_deliveries"], event_uuid)


async def restart_event(conn: Connection, event_uuid: uuid.UUID, status: EventStatus) -> None:
    await conn.execute(queries["restart_event"], event_uuid, status)


async def list_deliveries(
    db: Database,
    *,
    status: str | None,
    target: str | None,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    limit: int,
    after: tuple[datetime.datetime | None, uuid.UUID | None],
) -> list[DeliverySummary]:
    rows = await db.fetch_filtered(
        queries["list_deliveries"], status, target, since, until, limit, *after
    )
    return as_structs(rows, DeliverySummary)


class Retryable(msgspec.Struct, frozen=True):
    id: uuid.UUID
    event_id: uuid.UUID
    task_name: str


class LockedDelivery(msgspec.Struct, frozen=True):
    id: uuid.UUID
    event_id: uuid.UUID
    task_name: str
    status: DeliveryStatus
    superseded: bool


async def lock_delivery(conn: Connection, delivery_id: uuid.UUID) -> LockedDelivery | None:
    """One delivery, locked for a retry; None if unknown."""
    row = await conn.fetchrow(queries["lock_failed_delivery"], delivery_id)
    return as_struct(row, LockedDelivery) if row is not None else None


async def lock_failed(conn: Connection, ids: Sequence[uuid.UUID]) -> list[Retryable]:
    return as_structs(await conn.fetch(queries["lock_failed_batch"], list(ids)), Retryable)


async def pick_failed(
    db: Database,
    *,
    target: str | None,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    limit: int,
) -> list[uuid.UUID]:
    rows = await db.fetch(queries["pick_failed_deliveries"], target, since, until, limit)
    return [row["id"] for row in rows]


async def reset_deliveries(
    conn: Connection, ids: Sequence[uuid.UUID], job_ids: Sequence[int]
) -> None:
    """Failed -> pending with a fresh attempt budget and new jobs; events rolled up again."""
    events = {
        row["event_id"] for row in await conn.fetch(queries["reset_deliveries"], ids, job_ids)
    }
    for event_uuid in sorted(events):
        await conn.execute(queries["roll_up_event"], event_uuid)


async def create_bulk_retry(
    conn: Connection, bulk_id: uuid.UUID, filters: dict[str, Any], key_id: str, job_id: int
) -> None:
    await conn.execute(
        queries["create_bulk_retry"], bulk_id, json.dumps(filters, default=str), key_id, job_id
    )


async def get_bulk_retry(db: Database, bulk_id: uuid.UUID) -> BulkRetryOut | None:
    row = await db.fetchrow(queries["get_bulk_retry"], bulk_id)
    if row is None:
        return None
    return as_struct({**dict(row), "filters": json.loads(row["filters"])}, BulkRetryOut)


async def update_bulk_retry(
    db: Database, bulk_id: uuid.UUID, status: BulkRetryStatus, total: int, retried: int
) -> None:
    await db.execute(queries["update_bulk_retry"], bulk_id, status, total, retried)


#: The partitioned tables: their partition column, and the statuses that keep a partition
#: from being dropped (a row not finished yet).
PARTITIONED: dict[str, tuple[str, tuple[str, ...]]] = {
    "webhook_events": ("received_at", ("received",)),
    "webhook_deliveries": ("created_at", ("pending", "dispatched", "paused")),
}
#: How far ahead partitions exist (the default partition catches a row beyond, should the
#: maintenance stop for longer).
AHEAD: dict[PartitionInterval, str] = {"day": "7 days", "week": "3 weeks", "month": "3 months"}
#: DDL on a partitioned table waits at most this long for its lock (then tries next time),
#: so the inserts queued behind it are never held longer.
DDL_LOCK_TIMEOUT = "1s"


class Partition(msgspec.Struct, frozen=True):
    name: str
    #: None: the default partition (rows outside every range).
    lower_bound: datetime.datetime | None
    upper_bound: datetime.datetime | None


async def partitions(db: Database | Connection, table: str) -> list[Partition]:
    return as_structs(await db.fetch(queries["partitions"], table), Partition)


async def _ddl(db: Database, what: str, query: str, *args: Any) -> list[asyncpg.Record] | None:
    """A partition change under DDL_LOCK_TIMEOUT; None when its lock was not granted in time
    (it is tried again at the next run)."""
    try:
        async with db.transaction() as conn:
            await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
            return await conn.fetch(query, *args)
    except DatabaseError as exc:
        if not isinstance(exc.__cause__, asyncpg.LockNotAvailableError):
            raise
        logger.warning("%s: the lock was not granted within %s; next run", what, DDL_LOCK_TIMEOUT)
        return None


async def ensure_partitions(
    db: Database, interval: PartitionInterval, *, best_effort: bool = False
) -> list[str]:
    """Create the partitions ahead of now (hourly, and when an API starts); returns the new
    ones. ``best_effort``: an API starting with its database away or not migrated yet logs
    and goes on (the default partition takes what no partition covers)."""
    created: list[str] = []
    for table, (column, _) in PARTITIONED.items():
        try:
            rows = await _ddl(
                db,
                f"partitions of {table}",
                queries["ensure_partitions"],
                table,
                column,
                interval,
                AHEAD[interval],
            )
        except MimicError as exc:
            if not best_effort:
                raise
            logger.warning("could not create the partitions of %s ahead (%s)", table, exc.code)
            continue
        created += [row["name"] for row in rows or ()]
    return created


async def drop_expired_partitions(db: Database, *, older_than_days: int) -> list[str]:
    """Drop whole partitions whose every row is past the retention and finished; returns
    the ones dropped."""
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=older_than_days)
    dropped: list[str] = []
    for table, (_, unfinished) in PARTITIONED.items():
        for part in await partitions(db, table):
            if part.upper_bound is None or part.upper_bound > cutoff:
                continue
            rows = await _ddl(
                db,
                f"partition {part.name}",
                queries["drop_partition"],
                table,
                part.name,
                list(unfinished),
            )
            if rows and rows[0][0]:
                dropped.append(part.name)
    return dropped


async def prune_event_keys(db: Database, *, older_than_days: int, batch: int = 5000) -> int:
    """Forget provider event ids past the deduplication window, in small transactions."""
    return await db.in_batches(queries["prune_event_keys"], older_than_days, batch=batch)
