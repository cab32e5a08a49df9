"""Every filter the list endpoints offer is served by an index, in order: no Sort node.

The table is filled (20,000 events and as many notifications, with many rows per filter
value, as a busy tenant has) and analysed, so the planner's
choice is the one it makes with data, not with an empty table.
"""

from __future__ import annotations

import datetime
import itertools
import json
import uuid
from typing import Any

import asyncpg
import pytest

from mimic.email.repository import queries as email_queries
from mimic.events.repository import queries as event_queries

NOW = datetime.datetime.now(datetime.UTC)
CURSOR = (NOW - datetime.timedelta(hours=5), uuid.UUID(int=2**127))


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *itertools.chain.from_iterable(nodes(p) for p in plan.get("Plans", []))]


async def plan_of(db: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    raw = await db.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return nodes(json.loads(raw)[0]["Plan"])


def assert_ordered_by_an_index(plan: list[dict[str, Any]]) -> None:
    kinds = [node["Node Type"] for node in plan]
    assert "Sort" not in kinds, kinds
    assert "Incremental Sort" not in kinds, kinds
    assert any("Index" in kind for kind in kinds), kinds


@pytest.fixture
async def filled(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute(
        """
        INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body,
                                    status, received_at)
        SELECT gen_random_uuid(), (ARRAY['stripe', 'resend', 'postmark'])[1 + n % 3],
               (ARRAY['invoice.paid', 'customer.created', 'email.delivered', 'Bounce'])[1 + n % 4],
               'evt_' || n, '{}'::jsonb, '\\x7b7d'::bytea,
               (ARRAY['received', 'delivered', 'failed', 'ignored'])[1 + n % 4],
               now() - make_interval(secs => n * 7)
          FROM generate_series(1, 20000) AS n
        """
    )
    await db.execute(
        """
        INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, status,
                                        created_at)
        SELECT gen_random_uuid(), id, 'inkpass', 'mimic.tasks.route_to_inkpass_invoice_event',
               (ARRAY['pending', 'dispatched', 'success', 'failed'])[
                   1 + abs(hashtext(event_id)) % 4],
               received_at
          FROM webhook_events
        """
    )
    await db.execute(
        """
        INSERT INTO notifications (id, tenant_id, template, "to", "from", subject, html, text,
                                   provider, status, created_at)
        SELECT gen_random_uuid(), 'tenant' || (n % 4), 'welcome',
               ARRAY['user' || (n % 10) || '@example.com'], 'm@example.com', 's', 'h', 't',
               'dev', (ARRAY['queued', 'sent', 'delivered', 'failed'])[1 + n / 7 % 4],
               now() - make_interval(secs => n * 7)
          FROM generate_series(1, 20000) AS n
        """
    )
    await db.execute(
        """
        INSERT INTO notification_recipients (address, created_at, notification_id)
        SELECT r.address, n.created_at, n.id FROM notifications n, unnest(n."to") AS r(address)
        """
    )
    await db.execute("ANALYZE")
    return db


EVENT_FILTERS = {
    "provider": "stripe",
    "status": "failed",
    "event_type": "invoice.paid",
    "since": NOW - datetime.timedelta(days=1),
    "until": NOW - datetime.timedelta(hours=1),
}


DELIVERY_FILTERS = {
    "status": "failed",
    "target": "inkpass",
    "since": NOW - datetime.timedelta(days=1),
    "until": NOW - datetime.timedelta(hours=1),
}
NOTIFICATION_FILTERS = [
    (None, None, None),
    ("tenant3", None, None),
    ("tenant3", "sent", None),
    (None, "failed", None),
    (None, None, "user7@example.com"),
    ("tenant3", "sent", "user7@example.com"),
]


def combinations(filters: dict[str, Any]) -> list[tuple[str, ...]]:
    return [c for size in range(len(filters) + 1) for c in itertools.combinations(filters, size)]


async def test_every_list_filter_uses_an_index(filled: asyncpg.Connection) -> None:
    """One fill (the slow part) for every list query and filter combination."""
    for with_cursor in (False, True):
        for chosen in combinations(EVENT_FILTERS):
            args = [EVENT_FILTERS[k] if k in chosen else None for k in EVENT_FILTERS]
            after = CURSOR if with_cursor else (None, None)
            plan = await plan_of(filled, event_queries["list_events"], *args, 51, *after)
            with_context(assert_ordered_by_an_index, plan, f"events {chosen} {with_cursor=}")
    for chosen in combinations(DELIVERY_FILTERS):
        args = [DELIVERY_FILTERS[k] if k in chosen else None for k in DELIVERY_FILTERS]
        plan = await plan_of(filled, event_queries["list_deliveries"], *args, 51, None, None)
        with_context(assert_ordered_by_an_index, plan, f"deliveries {chosen}")
    for tenant, status, to in NOTIFICATION_FILTERS:
        if to is None:
            sql, args = email_queries["list_notifications"], [tenant, status, 21, None, None]
        else:
            sql = email_queries["list_notifications_to"]
            args = [tenant, status, to, 21, None, None]
        plan = await plan_of(filled, sql, *args)
        with_context(assert_ordered_by_an_index, plan, f"notifications {tenant, status, to}")


def with_context(check: Any, plan: list[dict[str, Any]], where: str) -> None:
    try:
        check(plan)
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from None
