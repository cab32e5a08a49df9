"""The email tasks: sending, and applying provider delivery events."""

from __future__ import annotations

import logging

import procrastinate

from mimic.core.deps import Deps
from mimic.core.jobs import QUEUE_EMAIL, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS, RETRY, deps_of, job_body
from mimic.email.service import send_notification
from mimic.email.status import SEND_TASK, purge_bodies
from mimic.email.tracking import EVENT_TASK, apply_email_event
from mimic.events.delivery import run_delivery

logger = logging.getLogger(__name__)


@job_body
async def send_email(deps: Deps, notification_id: str) -> None:
    await send_notification(deps, notification_id)


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
    tasks.task(name=EVENT_TASK, queue=QUEUE_WEBHOOKS, pass_context=True, retry=RETRY)(
        handle_email_delivery_event
    )
    tasks.task(name=PURGE_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(purge_email_bodies)
    return tasks
