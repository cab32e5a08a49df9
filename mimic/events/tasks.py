"""The gateway's own tasks: bulk retries, and the events' partitions and retention."""

from __future__ import annotations

import logging
import uuid

import procrastinate

from mimic.core.deps import Deps
from mimic.core.jobs import QUEUE_MAINTENANCE, QUEUE_WEBHOOKS, RETRY, deps_of, job_body
from mimic.events import gateway, repository
from mimic.events.admin import BULK_RETRY_TASK, run_bulk_retry
from mimic.events.delivery import run_deliveries
from mimic.events.routes import DELIVER_TASK

logger = logging.getLogger(__name__)

PRUNE_TASK = "mimic.tasks.prune_events"


@job_body
async def deliver(
    deps: Deps, delivery_id: str | None = None, delivery_ids: list[str] | None = None
) -> None:
    """A delivery of a stored route to its destination."""
    await run_deliveries(deps, delivery_id, delivery_ids)


RESUME_TASK = "mimic.tasks.resume_paused_deliveries"


async def resume_paused_deliveries(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic: queue again the paused deliveries of destinations that are active (a resume
    whose requeue was cut short by a crash, or a delivery parked while its resume ran)."""
    deps = deps_of(context)
    total = 0
    for name in await repository.paused_of_active(deps.db):
        total += await gateway.requeue_paused(deps.db, name)
    if total:
        logger.warning("queued %d paused delivery(ies) of active destinations again", total)
    return total


@job_body
async def bulk_retry_deliveries(deps: Deps, bulk_id: str) -> None:
    await run_bulk_retry(deps.db, uuid.UUID(bulk_id))


async def prune_events(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic (hourly): the events' and deliveries' partitions. Creates those ahead, drops
    whole partitions past EVENT_RETENTION_DAYS (0 keeps them) once every row in them is
    finished, and forgets provider event ids past EVENT_DEDUP_DAYS."""
    deps = deps_of(context)
    retention = deps.settings.retention
    created = await repository.ensure_partitions(deps.db, retention.event_partition)
    if created:
        logger.info("created partition(s) %s", ", ".join(created))
    dropped: list[str] = []
    if retention.event_days:
        dropped = await repository.drop_expired_partitions(
            deps.db, older_than_days=retention.event_days
        )
    if dropped:
        logger.info("dropped partition(s) past the retention: %s", ", ".join(dropped))
    forgotten = await repository.prune_event_keys(deps.db, older_than_days=retention.dedup_days)
    logger.log(
        logging.INFO if forgotten else logging.DEBUG,
        "forgot %d provider event id(s) past the deduplication window",
        forgotten,
    )
    return len(dropped)


def blueprint() -> procrastinate.Blueprint:
    """A new blueprint for each app: procrastinate ties a task to the app it was added to."""
    tasks = procrastinate.Blueprint()
    tasks.task(name=DELIVER_TASK, queue=QUEUE_WEBHOOKS, pass_context=True, retry=RETRY)(deliver)
    tasks.task(name=RESUME_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(
        resume_paused_deliveries
    )
    tasks.task(name=BULK_RETRY_TASK, queue=QUEUE_MAINTENANCE, pass_context=True, retry=RETRY)(
        bulk_retry_deliveries
    )
    tasks.task(name=PRUNE_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(prune_events)
    return tasks
