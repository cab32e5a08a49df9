"""The exactly-once handoff: event rows, delivery rows and their jobs in one transaction.

Group commit: webhooks that arrive while a commit is in flight wait for it to finish and are
then stored together by one statement (multi-row inserts of events and deliveries and one
batched defer; a single statement is its own transaction, and one round trip). A lone
webhook starts its commit at once: nothing waits for company. Every request is answered only
after the commit that stored its event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Sequence

from mimic.core import metrics
from mimic.core.db import Connection, Database
from mimic.core.errors import BadRequest, InvalidInput
from mimic.core.jobs import QUEUE_WEBHOOKS, JobToDefer, defer_jobs
from mimic.events import repository
from mimic.events.schemas import IncomingEvent, Route, WebhookAccepted

logger = logging.getLogger(__name__)

#: The most webhooks stored by one transaction.
MAX_BATCH = 200


async def ingest(db: Database, event: IncomingEvent, routes: Sequence[Route]) -> WebhookAccepted:
    """Store a verified event and enqueue one job per route, or nothing for a duplicate.

    Returns only after COMMIT, so a 2xx built from the result means the event is durable.
    A concurrent duplicate waits on the unique index and then sees the committed row.
    """
    return await committer(db).submit(event, routes)


class _Pending:
    __slots__ = ("done", "event", "routes")

    def __init__(
        self,
        event: IncomingEvent,
        routes: Sequence[Route],
        done: asyncio.Future[WebhookAccepted],
    ) -> None:
        self.event, self.routes, self.done = event, routes, done


class GroupCommit:
    """One per database pool (and so per event loop): a single flusher stores what queued."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Webhooks queued for the next commit (not counting the one in flight)."""
        return len(self._queue)

    async def submit(self, event: IncomingEvent, routes: Sequence[Route]) -> WebhookAccepted:
        done: asyncio.Future[WebhookAccepted] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(event, routes, done))
        if self._flusher is None:
            # Its own task: a request that goes away (client disconnect) cannot cut the
            # commit of the others short.
            self._flusher = asyncio.create_task(self._flush(), name="mimic ingest commit")
        # shield: this request's cancellation must not cancel the shared future.
        return await asyncio.shield(done)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        except BaseException:
            for pending in self._queue:
                pending.done.cancel()
            self._queue = []
            raise
        finally:
            self._flusher = None

    async def _commit(self, batch: list[_Pending]) -> None:
        metrics.ingest_batch_size.observe(len(batch))
        try:
            results = await _store(self._db, batch)
        except InvalidInput as exc:
            if len(batch) == 1:
                # JSON that msgspec parses but Postgres cannot store (e.g. \u0000 in text).
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "DataError"
                _settle(
                    batch[0],
                    error=BadRequest(f"the event cannot be stored: {cause}", code="invalid_json"),
                )
                return
            # Which event Postgres refused is unknown: store each alone, so it fails by
            # itself and its neighbours are stored.
            for one in batch:
                await self._commit([one])
            return
        except Exception as exc:
            # The database is away (503) or anything else: every request of the batch
            # gets it; nothing was committed, and the providers retry.
            for pending in batch:
                _settle(pending, error=exc)
            return
        except BaseException:
            # Cancelled (the process is stopping): nothing was answered as stored.
            for pending in batch:
                pending.done.cancel()
            raise
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=result)


def _settle(
    pending: _Pending, *, result: WebhookAccepted | None = None, error: Exception | None = None
) -> None:
    if pending.done.done():
        return
    if error is None:
        assert result is not None
        pending.done.set_result(result)
        return
    pending.done.set_exception(error)
    # Its request may be gone (cancelled while shielded): mark the error seen, so asyncio
    # does not log it as never retrieved. A waiting request still receives it.
    pending.done.exception()


async def _store(db: Database, batch: Sequence[_Pending]) -> list[WebhookAccepted]:
    """One statement, so one transaction, for the batch: insert the events (the first of a
    repeated key in the batch stands for the rest) and, for each new event, one delivery and
    one job per route; answer the others with the id already stored."""
    first: dict[tuple[str, str], uuid.UUID] = {}
    rows: list[tuple[uuid.UUID, IncomingEvent, bool]] = []
    deliveries: list[tuple[uuid.UUID, uuid.UUID, Route]] = []
    for pending in batch:
        key = (pending.event.provider, pending.event.event_id)
        if key not in first:
            first[key] = new_id = uuid.uuid4()
            rows.append((new_id, pending.event, bool(pending.routes)))
            deliveries += [(new_id, uuid.uuid4(), route) for route in pending.routes]
    stored = await repository.store_events(db, rows, deliveries)
    found = stored.existing
    unseen = [k for k, i in first.items() if i not in stored.inserted and k not in found]
    if unseen:
        # Committed by a concurrent request while this statement waited on the index.
        found = {**found, **await repository.find_event_ids(db, unseen)}
    results: list[WebhookAccepted] = []
    answered: set[tuple[str, str]] = set()
    for pending in batch:
        key = (pending.event.provider, pending.event.event_id)
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
    """One delivery and one job per route, on the caller's transaction (a replay)."""
    deliveries = [(event_uuid, uuid.uuid4(), route) for route in routes]
    if not deliveries:
        return []
    job_ids = await defer_jobs(
        conn,
        [
            JobToDefer(
                task_name=route.task_name,
                queue=QUEUE_WEBHOOKS,
                args={"delivery_id": str(delivery_id)},
            )
            for _, delivery_id, route in deliveries
        ],
    )
    await repository.insert_deliveries(conn, deliveries, job_ids)
    return [delivery_id for _, delivery_id, _ in deliveries]


_COMMITTERS: weakref.WeakKeyDictionary[Database, GroupCommit] = weakref.WeakKeyDictionary()


def committer(db: Database) -> GroupCommit:
    """The process's group commit for this pool."""
    found = _COMMITTERS.get(db)
    if found is None:
        found = _COMMITTERS[db] = GroupCommit(db)
    return found
