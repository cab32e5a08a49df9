"""The email tasks: sending, and applying provider delivery events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator

import procrastinate

from mimic.core import metrics
from mimic.core.deps import Deps
from mimic.core.jobs import (
    QUEUE_EMAIL,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    RETRY,
    current_job_id,
    deps_of,
    job_body,
)
from mimic.core.logs import bound
from mimic.email.send import EmailFailed, send_notification
from mimic.email.status import (
    SEND_GROUP_TASK,
    SEND_TASK,
    hand_over,
    prune_notifications,
    purge_bodies,
)
from mimic.email.tracking import EVENT_TASK, apply_email_event
from mimic.events.delivery import run_deliveries

logger = logging.getLogger(__name__)


#: How soon a send comes back when its tenant holds its whole share of the worker's email
#: slots (jittered, so a tenant's waiting sends do not all return at once).
TENANT_BUSY_DELAY = (1.0, 3.0)


@contextlib.asynccontextmanager
async def tenant_share(
    deps: Deps, notification_ids: list[str], tenant_id: str | None
) -> AsyncIterator[bool]:
    """One of the tenant's email slots for this job, else False: the job's sends were handed
    to a job due in a moment (no attempt spent), and this one has nothing to do. Jobs of no
    tenant (admin keys) and jobs queued before tenants were counted are not limited."""
    slots = deps.tenant_slots
    if tenant_id is None:
        yield True
        return
    if not slots.try_take(tenant_id):
        delay = random.uniform(*TENANT_BUSY_DELAY)
        ids = [uuid.UUID(i) for i in notification_ids]
        await hand_over(deps.db, ids, job_id=current_job_id(), delay=delay, tenant_id=tenant_id)
        metrics.tenant_slot_waits.inc()
        yield False
        return
    try:
        yield True
    finally:
        slots.give_back(tenant_id)


@job_body
async def send_email(
    deps: Deps, notification_id: str, tenant_id: str | None = None, turn: str | None = None
) -> None:
    async with tenant_share(deps, [notification_id], tenant_id) as mine:
        if mine:
            await send_notification(deps, notification_id, turn=turn)


@job_body
async def send_emails(
    deps: Deps, notification_ids: list[str], tenant_id: str | None = None
) -> None:
    """Several sends in one job, WORKER_CONCURRENCY_EMAIL at a time. A send to retry moves to
    a job of its own; the job fails if any send failed for good (after all were tried),
    naming them."""
    async with tenant_share(deps, notification_ids, tenant_id) as mine:
        if mine:
            await _send_all(deps, notification_ids)


async def _send_all(deps: Deps, notification_ids: list[str]) -> None:
    slots = asyncio.Semaphore(deps.settings.worker.concurrency_email)

    async def one(notification_id: str) -> None:
        async with slots:
            with bound(notification_id=notification_id):
                await send_notification(deps, notification_id, in_group=True)

    outcomes = await asyncio.gather(*(one(i) for i in notification_ids), return_exceptions=True)
    failed = [
        i for i, o in zip(notification_ids, outcomes, strict=True) if isinstance(o, EmailFailed)
    ]
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, EmailFailed):
            # The database went away, or a shutdown: the job runs again, and each send
            # resumes as its row says (sent ones are not sent again).
            raise outcome
    if failed:
        raise EmailFailed(f"{len(failed)} of {len(notification_ids)} failed: {', '.join(failed)}")


@job_body
async def handle_email_delivery_event(
    deps: Deps, delivery_id: str | None = None, delivery_ids: list[str] | None = None
) -> None:
    await run_deliveries(deps, delivery_id, delivery_ids, apply_email_event)


PURGE_TASK = "mimic.tasks.purge_email_bodies"


async def purge_email_bodies(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic: blank rendered bodies older than EMAIL_BODY_RETENTION_DAYS (0 keeps them)."""
    deps = deps_of(context)
    days = deps.settings.retention.email_body_days
    if days == 0:
        return 0
    purged = await purge_bodies(deps.db, older_than_days=days)
    logger.log(logging.INFO if purged else logging.DEBUG, "purged %d email body(ies)", purged)
    return purged


PRUNE_NOTIFICATIONS_TASK = "mimic.tasks.prune_notifications"


async def prune_old_notifications(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic: delete finished notifications older than NOTIFICATION_RETENTION_DAYS (0 keeps
    them). Batched deletes rather than partitions: no schema change, and a tenant's unique
    idempotency key stays one index; the cost is dead rows for autovacuum to reclaim."""
    deps = deps_of(context)
    days = deps.settings.retention.notification_days
    if days == 0:
        return 0
    deleted = await prune_notifications(deps.db, older_than_days=days)
    logger.log(logging.INFO if deleted else logging.DEBUG, "pruned %d notification(s)", deleted)
    return deleted


def blueprint() -> procrastinate.Blueprint:
    """A new blueprint for each app: procrastinate ties a task to the app it was added to."""
    tasks = procrastinate.Blueprint()
    tasks.task(name=SEND_TASK, queue=QUEUE_EMAIL, pass_context=True, retry=RETRY)(send_email)
    tasks.task(name=SEND_GROUP_TASK, queue=QUEUE_EMAIL, pass_context=True, retry=RETRY)(send_emails)
    tasks.task(name=EVENT_TASK, queue=QUEUE_WEBHOOKS, pass_context=True, retry=RETRY)(
        handle_email_delivery_event
    )
    tasks.task(name=PURGE_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(purge_email_bodies)
    tasks.task(name=PRUNE_NOTIFICATIONS_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(
        prune_old_notifications
    )
    return tasks
