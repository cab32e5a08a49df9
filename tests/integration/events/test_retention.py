"""Retention: whole partitions of old finished events go, young ones and their dedup stay;
old jobs and email bodies go too. The periodic tasks run in a real worker."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.db import Database, create_pool
from mimic.core.settings import ConfigError, Settings
from mimic.email.status import prune_notifications, purge_bodies
from mimic.events.repository import (
    drop_expired_partitions,
    ensure_partitions,
    prune_event_keys,
)
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


async def partition_of(db: asyncpg.Connection, table: str, event_uuid: object) -> str:
    column = "id" if table == "webhook_events" else "event_id"
    name: str = await db.fetchval(
        f"SELECT tableoid::regclass::text FROM {table} WHERE {column} = $1 LIMIT 1",
        uuid.UUID(str(event_uuid)),
    )
    return name


async def move_to_month(db: asyncpg.Connection, event_uuid: object, months_ago: int) -> None:
    """Give an event and its deliveries a time months_ago, in a partition made for it."""
    lower = await db.fetchval(
        "SELECT date_trunc('month', now() AT TIME ZONE 'UTC' - make_interval(months => $1))"
        " AT TIME ZONE 'UTC'",
        months_ago,
    )
    await db.execute(
        "SELECT mimic_add_partition($1::text, $2::text, $3::timestamptz, $3 + interval '1 month') "
        "WHERE to_regclass($1 || '_' || to_char($3 AT TIME ZONE 'UTC', 'YYYYMMDD')) IS NULL",
        "webhook_events",
        "received_at",
        lower,
    )
    await db.execute(
        "SELECT mimic_add_partition($1::text, $2::text, $3::timestamptz, $3 + interval '1 month') "
        "WHERE to_regclass($1 || '_' || to_char($3 AT TIME ZONE 'UTC', 'YYYYMMDD')) IS NULL",
        "webhook_deliveries",
        "created_at",
        lower,
    )
    target = uuid.UUID(str(event_uuid))
    await db.execute(
        "UPDATE webhook_events SET received_at = $2::timestamptz + interval '1 day' WHERE id = $1",
        target,
        lower,
    )
    await db.execute(
        "UPDATE webhook_deliveries SET created_at = $2::timestamptz + interval '1 day' "
        "WHERE event_id = $1",
        target,
        lower,
    )


async def test_whole_partitions_past_the_retention_go_unless_a_row_is_unfinished(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    old = await post(client, "evt_old", "customer.created")  # ignored: finished
    stuck = await post(client, "evt_stuck", "invoice.paid")  # received, delivery pending
    young = await post(client, "evt_young", "customer.created")
    await move_to_month(db, old["event_id"], 5)
    await move_to_month(db, stuck["event_id"], 4)
    old_part = await partition_of(db, "webhook_events", old["event_id"])
    stuck_part = await partition_of(db, "webhook_events", stuck["event_id"])
    stuck_deliveries = await partition_of(db, "webhook_deliveries", stuck["event_id"])
    assert len({old_part, stuck_part, stuck_deliveries.replace("deliveries", "events")}) == 2
    pool = await create_pool(database_url, max_size=2)
    try:
        dropped = await drop_expired_partitions(Database(pool), older_than_days=60)
    finally:
        await pool.close()
    # The old month went whole; the month with an unfinished event (and the deliveries'
    # month with its pending delivery) stayed, as did the young one.
    assert old_part in dropped
    assert stuck_part not in dropped
    assert stuck_deliveries not in dropped
    left = {r["event_id"] for r in await db.fetch("SELECT event_id FROM webhook_events")}
    assert left == {"evt_stuck", "evt_young"}
    assert await db.fetchval("SELECT to_regclass($1)", old_part) is None
    # Deduplication still holds inside the retention.
    again = await post(client, "evt_young", "customer.created")
    assert again == {"event_id": young["event_id"], "duplicate": True}


async def test_a_partition_whose_lock_is_busy_is_left_for_the_next_run(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    old = await post(client, "evt_old", "customer.created")
    await move_to_month(db, old["event_id"], 5)
    part = await partition_of(db, "webhook_events", old["event_id"])
    reader = await asyncpg.connect(database_url)
    pool = await create_pool(database_url, max_size=2)
    try:
        async with reader.transaction():  # a long admin read holds the table
            await reader.fetch("SELECT 1 FROM webhook_events LIMIT 1")
            started = time.monotonic()
            assert part not in await drop_expired_partitions(Database(pool), older_than_days=60)
            assert time.monotonic() - started < 10  # gave up (1 s a partition), did not queue
        assert part in await drop_expired_partitions(Database(pool), older_than_days=60)
    finally:
        await pool.close()
        await reader.close()


async def test_an_event_outside_every_partition_is_stored_then_moved_into_its_own(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    # The maintenance stopped for months: no partition covers now.
    for row in await db.fetch("SELECT name FROM mimic_partitions('webhook_events')"):
        if row["name"] != "webhook_events_default":
            await db.execute(f'DROP TABLE "{row["name"]}"')
    event = await post(client, "evt_late", "customer.created")
    assert await partition_of(db, "webhook_events", event["event_id"]) == "webhook_events_default"
    pool = await create_pool(database_url, max_size=2)
    try:
        created = await ensure_partitions(Database(pool), "week")
    finally:
        await pool.close()
    this_week = await db.fetchval(
        "SELECT 'webhook_events_' || to_char(date_trunc('week', now() AT TIME ZONE 'UTC'),"
        " 'YYYYMMDD')"
    )
    assert this_week in created
    assert len([name for name in created if name.startswith("webhook_events_")]) == 4
    assert await partition_of(db, "webhook_events", event["event_id"]) == this_week
    again = await post(client, "evt_late", "customer.created")
    assert again == {"event_id": event["event_id"], "duplicate": True}


async def test_provider_ids_past_the_dedup_window_are_forgotten(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    first = await post(client, "evt_late_retry", "customer.created")
    kept = await post(client, "evt_recent", "customer.created")
    await db.execute(
        "UPDATE webhook_event_keys SET received_at = now() - interval '8 days' "
        "WHERE event_id = 'evt_late_retry'"
    )
    pool = await create_pool(database_url, max_size=2)
    try:
        assert await prune_event_keys(Database(pool), older_than_days=7, batch=1) == 1
    finally:
        await pool.close()
    # A retry past the window is a new event (the README says so); within it, a duplicate.
    later = await post(client, "evt_late_retry", "customer.created")
    assert later["event_id"] != first["event_id"]
    assert later["duplicate"] is False
    assert await post(client, "evt_recent", "customer.created") == {
        "event_id": kept["event_id"],
        "duplicate": True,
    }
    assert (
        await db.fetchval("SELECT count(*) FROM webhook_events WHERE event_id = 'evt_late_retry'")
        == 2
    )


def test_partition_and_dedup_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="EVENT_PARTITION_INTERVAL"):
        Settings.from_env({"EVENT_PARTITION_INTERVAL": "year"})
    with pytest.raises(ConfigError, match="EVENT_DEDUP_DAYS"):
        Settings.from_env({"EVENT_DEDUP_DAYS": "2"})
    with pytest.raises(ConfigError, match="EVENT_DEDUP_DAYS"):
        Settings.from_env({"EVENT_DEDUP_DAYS": "31"})
    retention = Settings.from_env({"EVENT_PARTITION_INTERVAL": "day"}).retention
    assert (retention.event_partition, retention.dedup_days) == ("day", 7)


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
