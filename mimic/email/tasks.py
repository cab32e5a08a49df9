"""The email tasks: sending, and applying provider delivery events."""

from __future__ import annotations

import asyncio
import logging

import procrastinate

from mimic.core.deps import Deps
from mimic.core.jobs import QUEUE_EMAIL, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS, RETRY, deps_of, job_body
from mimic.core.logs import bound
from mimic.email.send import EmailFailed, send_notification
from mimic.email.status import SEND_GROUP_TASK, SEND_TASK, purge_bodies
from mimic.email.tracking import EVENT_TASK, apply_email_event
from mimic.events.delivery import run_delivery

logger = logging.getLogger(__name__)


@job_body
async def send_email(deps: Deps, notification_id: str) -> None:
    await send_notification(deps, notification_id)


@job_body
async def send_emails(deps: Deps, notification_ids: list[str]) -> None:
    """Several sends in one job, WORKER_CONCURRENCY at a time. A send to retry moves to a job
    of its own; the job fails if any send failed for good (after all were tried), naming
    them."""
    slots = asyncio.Semaphore(deps.settings.worker.concurrency)

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
async def handle_email_delivery_event(deps: Deps, delivery_id: str) -> None:
    await run_delivery(deps, delivery_id, apply_email_event)


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


def blueprint() -> procrastinate.Blueprint:
    """A new blueprint for each app: procrastinate ties a task to the app it was added to."""
    tasks = procrastinate.Blueprint()
    tasks.task(name=SEND_TASK, queue=QUEUE_EMAIL, pass_context=True, retry=RETRY)(send_email)
    tasks.task(name=SEND_GROUP_TASK, queue=QUEUE_EMAIL, pass_context=True, retry=RETRY)(send_emails)
    tasks.task(name=EVENT_TASK, queue=QUEUE_WEBHOOKS, pass_context=True, retry=RETRY)(
        handle_email_delivery_event
    )
    tasks.task(name=PURGE_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(purge_email_bodies)
    return tasks
