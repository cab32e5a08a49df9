"""The exactly-once handoff: event rows, delivery rows and their jobs in one transaction.

Webhooks go through a group commit (``core.batching``): those that arrive while a commit is
in flight are stored together by one statement (multi-row inserts of events and deliveries
and one batched defer; a single statement is its own transaction, and one round trip).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import msgspec

from mimic.core.batching import GroupCommit, group_commit
from mimic.core.db import Connection, Database
from mimic.core.errors import BadRequest, InvalidInput, ServiceUnavailable
from mimic.core.settings import PartitionInterval
from mimic.events import repository
from mimic.events.gateway import route_set
from mimic.events.routes import Router, RouteSet
from mimic.events.schemas import IncomingEvent, Route, WebhookAccepted

logger = logging.getLogger(__name__)

#: The group commit's name (labels mimic_group_commit_size).
WRITER = "webhooks"


#: A batch whose routes went stale while it was matched is matched again, at most this often
#: (each time against the routes just read): more means the configuration is changing
#: faster than a batch commits, and the request fails (503, the provider retries).
MAX_STALE = 5


async def prepare_partitions(db: Database, interval: PartitionInterval) -> None:
    """When an API starts: the events' partitions ahead (the worker's hourly task keeps them
    so too). Best effort: an API starts with its database away or not migrated yet, and the
    default partition takes what no partition covers."""
    await repository.ensure_partitions(db, interval, best_effort=True)


async def ingest(db: Database, router: Router, event: IncomingEvent) -> WebhookAccepted:
    """Store a verified event and enqueue one job per matching route, or nothing for a
    duplicate.

    Returns only after COMMIT, so a 2xx built from the result means the event is durable.
    A concurrent duplicate waits on the unique index and then sees the committed row.
    """
    try:
        return await committer(db, router).submit(event)
    except InvalidInput as exc:
        # JSON that msgspec parses but Postgres cannot store (e.g. \u0000 in text).
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "DataError"
        raise BadRequest(f"the event cannot be stored: {cause}", code="invalid_json") from None


def committer(db: Database, router: Router) -> GroupCommit[IncomingEvent, WebhookAccepted]:
    """The process's webhook group commit on this pool."""

    async def store(batch: Sequence[IncomingEvent]) -> list[WebhookAccepted]:
        return await _store(db, router, batch)

    return group_commit(db, WRITER, store)


def match(router: Router, stored: RouteSet, event: IncomingEvent) -> list[Route]:
    def payload() -> object:
        return msgspec.json.decode(event.payload_json)

    return router.routes_for(stored, event.provider, event.event_type, payload)


async def _store(
    db: Database, router: Router, batch: Sequence[IncomingEvent]
) -> list[WebhookAccepted]:
    """One statement, so one transaction, for the batch: insert the events (the first of a
    repeated key in the batch stands for the rest) and, for each new event, one delivery and
    one job per matching route; answer the others with the id already stored."""
    first: dict[tuple[str, str], uuid.UUID] = {}
    unique: list[tuple[uuid.UUID, IncomingEvent]] = []
    for event in batch:
        key = (event.provider, event.event_id)
        if key not in first:
            first[key] = new_id = uuid.uuid4()
            unique.append((new_id, event))
    routes = await route_set(db, router)
    for _ in range(MAX_STALE):
        rows: list[tuple[uuid.UUID, IncomingEvent, bool]] = []
        deliveries: list[tuple[uuid.UUID, uuid.UUID, Route]] = []
        for new_id, event in unique:
            matched = match(router, routes, event)
            rows.append((new_id, event, bool(matched)))
            deliveries += [(new_id, uuid.uuid4(), route) for route in matched]
        async with db.pinned(WRITER) as conn:  # one commit in flight at a time
            stored = await repository.store_events(conn, rows, deliveries, routes.version)
            if stored.stale:
                routes = await route_set(db, router, refresh=True)
                continue
            found = stored.existing
            unseen = [k for k, i in first.items() if i not in stored.inserted and k not in found]
            if unseen:
                # Committed by a concurrent request while this statement waited on the index.
                found = {**found, **await repository.find_event_ids(conn, unseen)}
        break
    else:
        raise ServiceUnavailable(
            "the gateway's routes are changing faster than events can be stored; retry"
        )
    results: list[WebhookAccepted] = []
    answered: set[tuple[str, str]] = set()
    for event in batch:
        key = (event.provider, event.event_id)
        new_id = first[key]
        if new_id in stored.inserted:
            results.append(WebhookAccepted(event_id=new_id, duplicate=key in answered))
            answered.add(key)
        else:
            results.append(WebhookAccepted(event_id=found[key], duplicate=True))
    return results


async def enqueue_routes(
    conn: Connection, event_uuid: uuid.UUID, routes: Sequence[Route]
) -> list[uuid.UUID]:
    """One delivery per route and their jobs, on the caller's transaction (a replay)."""
    deliveries = [(event_uuid, uuid.uuid4(), route) for route in routes]
    if not deliveries:
        return []
    job_ids = await repository.defer_deliveries(
        conn, [(delivery_id, route.task_name) for _, delivery_id, route in deliveries]
    )
    await repository.insert_deliveries(conn, deliveries, job_ids)
    return [delivery_id for _, delivery_id, _ in deliveries]
