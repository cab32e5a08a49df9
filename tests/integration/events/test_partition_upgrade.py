"""An installation from before partitions upgrades without losing a row: events and deliveries
of every age land in their month's partition, recent provider ids still deduplicate, and a
pending delivery is still delivered by a real worker. (`make bench` runs the same migration on
1,000,000 events and prints how long it held its lock.)"""

from __future__ import annotations

import uuid

import asyncpg

from mimic.core.migrate import load_steps, migrate
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer
from tests.helpers import (
    client_for,
    make_settings,
    running_worker,
    stripe_event,
    stripe_headers,
)

UPGRADE = "0016_event_partitions"


def before_partitions() -> list:  # type: ignore[type-arg]
    return [s for s in load_steps() if not (s.version[:4].isdigit() and s.version >= UPGRADE)]


async def test_every_row_survives_the_upgrade_to_partitions(
    empty_database_url: str, inkpass: FakeHTTPServer
) -> None:
    await migrate(empty_database_url, before_partitions())
    conn = await asyncpg.connect(empty_database_url)
    ages = {"evt_last_year": 400, "evt_last_month": 40, "evt_recent": 10}
    ids = {name: uuid.uuid4() for name in ages}
    pending = uuid.uuid4()
    try:
        for name, days in ages.items():
            await conn.execute(
                """
                INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body,
                                            status, received_at)
                VALUES ($1, 'stripe', 'invoice.paid', $2, $3::jsonb, $4, $5,
                        now() - make_interval(days => $6))
                """,
                ids[name],
                name,
                stripe_event("invoice.paid", id=name).decode(),
                stripe_event("invoice.paid", id=name),
                "received" if name == "evt_recent" else "delivered",
                days,
            )
            await conn.execute(
                """
                INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, status,
                                                created_at)
                VALUES ($1, $2, 'inkpass', 'mimic.tasks.route_to_inkpass_invoice_event', $3,
                        now() - make_interval(days => $4))
                """,
                pending if name == "evt_recent" else uuid.uuid4(),
                ids[name],
                "pending" if name == "evt_recent" else "success",
                days,
            )
        await migrate(empty_database_url, load_steps())

        rows = await conn.fetch(
            "SELECT id, tableoid::regclass::text AS part, received_at FROM webhook_events"
        )
        assert {r["id"] for r in rows} == set(ids.values())
        for row in rows:  # each in the partition of its month
            assert row["part"] == "webhook_events_" + row["received_at"].strftime("%Y%m01")
        deliveries = await conn.fetch(
            "SELECT event_id, tableoid::regclass::text AS part FROM webhook_deliveries"
        )
        assert {r["event_id"] for r in deliveries} == set(ids.values())
        assert all(r["part"] != "webhook_deliveries_default" for r in deliveries)
        # Provider ids of the last 30 days were carried over for deduplication.
        keys = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM webhook_event_keys")}
        assert keys == {"evt_recent"}
        # The delivery pending before the upgrade is delivered after it.
        job = await conn.fetchval(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('webhooks', "
            "'mimic.tasks.route_to_inkpass_invoice_event', 0, NULL, NULL, "
            "jsonb_build_object('delivery_id', $1::text), NULL)"
            "::procrastinate_job_to_defer_v1])",
            str(pending),
        )
        assert job
    finally:
        await conn.close()

    settings: Settings = make_settings(empty_database_url, INKPASS_INTERNAL_URL=inkpass.url)
    from mimic.app import create_app

    async with client_for(create_app(settings)) as client:
        body = stripe_event("invoice.paid", id="evt_recent")
        again = await client.post(
            "/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
        )
        assert again.json() == {"event_id": str(ids["evt_recent"]), "duplicate": True}
    async with running_worker(settings):
        await inkpass.wait_for_requests(1, within=30)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert (
            await conn.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", pending)
            == "success"
        )
    finally:
        await conn.close()
