"""The seed's task names are a contract: jobs queued by an older Mimic must still run.

The names below are written out, not imported: a rename in the code fails here.
"""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from mimic.core.settings import Settings
from mimic.worker import build_app
from tests.fakes import FakeHTTPServer, SmtpSink
from tests.helpers import make_settings, running_worker, wait_for_value

SEED_TASKS = {
    "mimic.tasks.route_to_inkpass_subscription_created": "subscription-created",
    "mimic.tasks.route_to_inkpass_subscription_updated": "subscription-updated",
    "mimic.tasks.route_to_inkpass_subscription_deleted": "subscription-deleted",
    "mimic.tasks.route_to_inkpass_invoice_event": "invoice-event",
}
OTHER_TASKS = {
    "mimic.tasks.handle_email_delivery_event",
    "mimic.tasks.send_email",
    "mimic.tasks.send_emails",
    "mimic.tasks.retry_stalled_jobs",
    "mimic.tasks.bulk_retry_deliveries",
    "mimic.tasks.prune_events",
    "mimic.tasks.purge_email_bodies",
    "mimic.tasks.remove_old_jobs",
    # Routes as data: deliveries of stored routes, and the resume sweep.
    "mimic.tasks.deliver",
    "mimic.tasks.resume_paused_deliveries",
    "mimic.tasks.prune_notifications",
}

# What an older Mimic wrote: procrastinate's own defer function with a literal task name.
DEFER_BY_NAME = """
SELECT procrastinate_defer_jobs_v1(ARRAY[
    ROW($1, $2, 0, NULL, NULL, $3::jsonb, NULL)::procrastinate_job_to_defer_v1
])
"""


def test_the_worker_registers_every_seed_task_name(database_url: str) -> None:
    app = build_app(make_settings(database_url))
    mimic_tasks = {name for name in app.tasks if name.startswith("mimic.")}
    assert mimic_tasks == set(SEED_TASKS) | OTHER_TASKS


@pytest.mark.parametrize(("task_name", "path"), sorted(SEED_TASKS.items()))
async def test_a_job_queued_by_name_before_an_upgrade_runs_after_it(
    database_url: str,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
    task_name: str,
    path: str,
) -> None:
    event_uuid, delivery_id = uuid.uuid4(), uuid.uuid4()
    payload = {"id": "evt_old", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}
    await db.execute(
        """
        INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body)
        VALUES ($1, 'stripe', 'invoice.paid', 'evt_old', $2::jsonb, $3)
        """,
        event_uuid,
        json.dumps(payload),
        json.dumps(payload).encode(),
    )
    await db.execute(
        "INSERT INTO webhook_deliveries (id, event_id, target_service, task_name) "
        "VALUES ($1, $2, 'inkpass', $3)",
        delivery_id,
        event_uuid,
        task_name,
    )
    await db.execute(
        DEFER_BY_NAME, "webhooks", task_name, json.dumps({"delivery_id": str(delivery_id)})
    )
    settings = make_settings(database_url, INKPASS_INTERNAL_URL=inkpass.url)
    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT status FROM webhook_deliveries WHERE id = $1",
            delivery_id,
            until=lambda status: status == "success",
        )
    [request] = inkpass.requests
    assert request.path == f"/internal/billing/{path}"
    assert request.headers["idempotency-key"] == str(delivery_id)


async def test_a_send_queued_by_name_before_an_upgrade_runs_after_it(
    database_url: str, db: asyncpg.Connection
) -> None:
    notification_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO notifications (id, template, "to", "from", subject, html, text, provider)
        VALUES ($1, 'welcome', '{a@example.com}', 'm@example.com', 'Hi', '<p>Hi</p>', 'Hi',
                'dev')
        """,
        notification_id,
    )
    await db.execute(
        DEFER_BY_NAME,
        "email",
        "mimic.tasks.send_email",
        json.dumps({"notification_id": str(notification_id)}),
    )
    with SmtpSink() as smtp:
        settings: Settings = make_settings(
            database_url, DEV_SMTP_HOST="127.0.0.1", DEV_SMTP_PORT=str(smtp.port)
        )
        async with running_worker(settings):
            await wait_for_value(
                db,
                "SELECT status FROM notifications WHERE id = $1",
                notification_id,
                until=lambda status: status == "sent",
            )
    assert [m["Subject"] for m in smtp.messages] == ["Hi"]


def test_each_app_owns_its_tasks(database_url: str) -> None:
    # procrastinate ties a task to the app it was added to; a second app (a test, the CLI)
    # must not take the first one's tasks, or the first worker's periodic sweep breaks.
    first = build_app(make_settings(database_url))
    second = build_app(make_settings(database_url))
    for name in SEED_TASKS.keys() | OTHER_TASKS:
        assert first.tasks[name].blueprint is first
        assert second.tasks[name].blueprint is second
