"""Retention: old finished events go in small batches, young ones and their dedup stay;
old jobs and email bodies go too. The periodic tasks run in a real worker."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.db import Database, create_pool
from mimic.core.settings import ConfigError, Settings
from mimic.email.status import prune_notifications, purge_bodies
from mimic.events.repository import prune_events
from tests.helpers import stripe_event, stripe_headers

URL = "/api/v1/gateway/webhooks/stripe"


async def post(
    client: AsyncTestClient[Litestar], event_id: str, event_type: str
) -> dict[str, object]:
    body = stripe_event(event_type, id=event_id)
    response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    data: dict[str, object] = response.json()
    return data


async def test_old_finished_events_go_young_and_unfinished_stay(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    old = await post(client, "evt_old", "customer.created")  # ignored: finished
    stuck = await post(client, "evt_stuck", "invoice.paid")  # received: not finished
    young = await post(client, "evt_young", "customer.created")
    await db.execute(
        "UPDATE webhook_events SET received_at = now() - interval '100 days' WHERE id = ANY($1)",
        [uuid.UUID(str(old["event_id"])), uuid.UUID(str(stuck["event_id"]))],
    )
    pool = await create_pool(database_url, max_size=2)
    try:
        assert await prune_events(Database(pool), older_than_days=90, batch=1) == 1
    finally:
        await pool.close()
    left = {r["event_id"] for r in await db.fetch("SELECT event_id FROM webhook_events")}
    assert left == {"evt_stuck", "evt_young"}
    # Deduplication still holds inside the retention.
    again = await post(client, "evt_young", "customer.created")
    assert again == {"event_id": young["event_id"], "duplicate": True}


def test_event_retention_shorter_than_provider_retries_is_refused() -> None:
    with pytest.raises(ConfigError, match="EVENT_RETENTION_DAYS"):
        Settings.from_env({"EVENT_RETENTION_DAYS": "2"})
    assert Settings.from_env({"EVENT_RETENTION_DAYS": "0"}).retention.event_days == 0


async def test_old_email_bodies_are_blanked_metadata_and_timeline_stay(
    database_url: str, db: asyncpg.Connection
) -> None:
    ids = []
    for age, status in [(40, "sent"), (40, "queued"), (5, "sent")]:
        notification_id = uuid.uuid4()
        ids.append(notification_id)
        await db.execute(
            """
            INSERT INTO notifications (id, template, "to", "from", subject, html, text, provider,
                                       status, created_at)
            VALUES ($1, 'password_reset', '{a@example.com}', 'm@example.com', 'Reset',
                    '<a href="https://x/reset/secret">reset</a>', 'https://x/reset/secret',
                    'dev', $2, now() - make_interval(days => $3))
            """,
            notification_id,
            status,
            age,
        )
        await db.execute(
            "INSERT INTO notification_events (notification_id, status) VALUES ($1, 'queued')",
            notification_id,
        )
    pool = await create_pool(database_url, max_size=2)
    try:
        assert await purge_bodies(Database(pool), older_than_days=30, batch=1) == 1
    finally:
        await pool.close()
    rows = {
        r["id"]: r
        for r in await db.fetch("SELECT id, html, text, subject, body_purged_at FROM notifications")
    }
    purged, in_flight, young = (rows[i] for i in ids)
    assert (purged["html"], purged["text"], purged["subject"]) == ("", "", "Reset")
    assert purged["body_purged_at"] is not None
    assert "secret" in in_flight["html"]  # not finished: may still be sent
    assert "secret" in young["html"]
    assert await db.fetchval("SELECT count(*) FROM notification_events") == 3


async def test_old_finished_notifications_are_deleted_with_their_timeline(
    database_url: str, db: asyncpg.Connection
) -> None:
    ids = []
    for age, status in [(400, "sent"), (400, "queued"), (10, "failed"), (400, "failed")]:
        notification_id = uuid.uuid4()
        ids.append(notification_id)
        await db.execute(
            """
            INSERT INTO notifications (id, template, "to", "from", subject, html, text, provider,
                                       status, created_at, idempotency_key, tenant_id)
            VALUES ($1, 'welcome', '{a@example.com}', 'm@example.com', 'Hi', '<p>Hi</p>', 'Hi',
                    'dev', $2, now() - make_interval(days => $3), $4, 'acme')
            """,
            notification_id,
            status,
            age,
            f"key-{notification_id}",
        )
        await db.execute(
            "INSERT INTO notification_events (notification_id, status) VALUES ($1, 'queued')",
            notification_id,
        )
    pool = await create_pool(database_url, max_size=2)
    try:
        # In batches of one: both old finished ones go, each in its own transaction.
        assert await prune_notifications(Database(pool), older_than_days=365, batch=1) == 2
    finally:
        await pool.close()
    left = {r["id"] for r in await db.fetch("SELECT id FROM notifications")}
    _, in_flight, young, _ = ids
    assert left == {in_flight, young}  # a send still queued is never deleted
    timeline = {r["notification_id"] for r in await db.fetch("SELECT * FROM notification_events")}
    assert timeline == {in_flight, young}
