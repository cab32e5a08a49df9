"""`python -m bench --phases upgrade`: the migration to partitioned events on a full table.

A database of its own on the bench's server is migrated to the last schema before partitions,
filled with `--upgrade-events` events (spread over 80 days, one delivery each), then migrated
to the current schema, timed. The migration holds an ACCESS EXCLUSIVE lock on webhook_events
and webhook_deliveries from its first statement to its commit, so its duration is how long
webhooks wait (or get a 503 that the provider retries). Checked: the same events and
deliveries (count and a digest of their ids) before and after, none in a default partition.
"""

from __future__ import annotations

import time
import urllib.parse

import asyncpg

from mimic.core.migrate import Step, load_steps, migrate

UPGRADE = "0016_event_partitions"

FILL = """
INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body, status,
                            received_at)
SELECT gen_random_uuid(), 'stripe', 'invoice.paid', 'evt_upgrade_' || n,
       '{"id": "evt_upgrade", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}',
       '\\x7b7d'::bytea, 'delivered', now() - make_interval(secs => n * $2::float8)
  FROM generate_series(1, $1) AS n;
"""
FILL_DELIVERIES = """
INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, status, created_at)
SELECT gen_random_uuid(), id, 'inkpass', 'mimic.tasks.route_to_inkpass_invoice_event', 'success',
       received_at
  FROM webhook_events
"""
DIGEST = """
SELECT (SELECT count(*) FROM webhook_events) AS events,
       (SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM webhook_events) AS event_ids,
       (SELECT count(*) FROM webhook_deliveries) AS deliveries,
       (SELECT md5(string_agg(id::text || event_id::text, ',' ORDER BY id))
          FROM webhook_deliveries) AS delivery_ids
"""


def before_partitions() -> list[Step]:
    return [s for s in load_steps() if not (s.version[:4].isdigit() and s.version >= UPGRADE)]


def other_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def upgrade_phase(dsn: str, events: int) -> None:
    print(f"phase U: the migration to partitioned events on {events:,} stored events")
    name = "mimic_bench_upgrade"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    target = other_database(dsn, name)
    try:
        await migrate(target, before_partitions())
        conn = await asyncpg.connect(target)
        try:
            started = time.perf_counter()
            await conn.execute(FILL, events, 80 * 86400 / events)
            await conn.execute(FILL_DELIVERIES)
            await conn.execute("VACUUM ANALYZE webhook_events, webhook_deliveries")
            size = await conn.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size('webhook_events') "
                "+ pg_total_relation_size('webhook_deliveries'))"
            )
            print(
                f"  filled {events:,} events and deliveries ({size}) in "
                f"{time.perf_counter() - started:.0f} s"
            )
            before = dict(await conn.fetchrow(DIGEST) or {})
        finally:
            await conn.close()
        started = time.perf_counter()
        applied = await migrate(target, load_steps())
        locked = time.perf_counter() - started
        conn = await asyncpg.connect(target)
        try:
            after = dict(await conn.fetchrow(DIGEST) or {})
            stray = await conn.fetchval(
                "SELECT (SELECT count(*) FROM webhook_events_default)"
                " + (SELECT count(*) FROM webhook_deliveries_default)"
            )
            partitions = await conn.fetchval(
                "SELECT count(*) FROM mimic_partitions('webhook_events')"
            )
        finally:
            await conn.close()
        kept = before == after and stray == 0
        print(
            f"  {', '.join(applied)}: {locked:.1f} s, all of it with webhook_events and "
            f"webhook_deliveries locked (ACCESS EXCLUSIVE); other tables untouched"
        )
        print(
            f"  every row kept: {'yes' if kept else 'NO'} ({after['events']:,} events, "
            f"{after['deliveries']:,} deliveries, id digests equal: "
            f"{before == after}; in the default partition: {stray}; "
            f"{partitions} partitions of webhook_events)"
        )
        if not kept:
            raise SystemExit("the upgrade lost or changed rows")
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()
