"""The email tasks: sending, and applying provider delivery events."""

from __future__ import annotations

import procrastinate

from mimic.core.deps import Deps
from mimic.core.jobs import QUEUE_EMAIL, QUEUE_WEBHOOKS, RETRY, job_body
from mimic.email.service import send_notification
from mimic.email.status import SEND_TASK
from mimic.email.tracking import EVENT_TASK, apply_email_event
from mimic.events.delivery import run_delivery


@job_body
async def send_email(deps: Deps, notification_id: str) -> None:
    await send_notification(deps, notification_id)


@job_body
async def handle_email_delivery_event(deps: Deps, delivery_id: str) -> None:
    await run_delivery(deps, delivery_id, apply_email_event)


def blueprint() -> procrastinate.Blueprint:
    """A new blueprint for each app: procrastinate ties a task to the app it was added to."""
    tasks = procrastinate.Blueprint()
    tasks.task(name=SEND_TASK, queue=QUEUE_EMAIL, pass_context=True, retry=RETRY)(send_email)
    tasks.task(name=EVENT_TASK, queue=QUEUE_WEBHOOKS, pass_context=True, retry=RETRY)(
        handle_email_delivery_event
    )
    return tasks
