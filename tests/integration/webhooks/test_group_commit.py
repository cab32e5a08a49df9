"""Group commit: webhooks that arrive while a commit is in flight are stored together.

To make a batch on purpose, the test holds a SHARE lock on webhook_events: the first
webhook's INSERT waits on it (its commit is in flight), the next ones queue behind it, and
releasing the lock lets the queue through as one transaction.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import NamedTuple

import asyncpg
import httpx
import pytest
from litestar import Litestar

from mimic.app import create_app, router
from mimic.core.settings import Settings
from mimic.events.ingest import committer
from tests.helpers import (
    commit_held,
    group_commit_sizes,
    insert_waits,
    live_api,
    stripe_event,
    stripe_headers,
    wait_for,
)

URL = "/api/v1/gateway/webhooks/stripe"


class Api(NamedTuple):
    http: httpx.AsyncClient
    app: Litestar


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """A real server: concurrent requests (Litestar's test client runs one at a time)."""
    app = create_app(settings)
    async with live_api(settings, app) as base, httpx.AsyncClient(base_url=base) as http:
        yield Api(http, app)


async def send(api: Api, body: bytes) -> httpx.Response:
    return await api.http.post(URL, content=body, headers=stripe_headers(body))


async def batch_of(
    api: Api, database_url: str, bodies: list[bytes]
) -> tuple[httpx.Response, list[httpx.Response]]:
    """Send a first webhook whose commit is held, queue ``bodies`` behind it, release; the
    queued ones are then stored by one transaction."""
    committing = committer(api.app.state.deps.db, router())
    async with commit_held(database_url, "webhook_events") as watcher:
        first = asyncio.create_task(send(api, stripe_event(id=f"evt_{uuid.uuid4().hex}")))
        await wait_for(lambda: insert_waits(watcher, "webhook_events"))
        queued = [asyncio.create_task(send(api, body)) for body in bodies]

        async def all_queued() -> bool:
            return committing.waiting == len(bodies)

        await wait_for(all_queued)
    return await first, list(await asyncio.gather(*queued))


async def deliveries_of(database_url: str, event_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries d JOIN webhook_events e"
            " ON e.id = d.event_id WHERE e.event_id = $1",
            event_id,
        )
        return count
    finally:
        await conn.close()


async def test_webhooks_queued_behind_a_commit_are_stored_by_one_transaction(
    api: Api, database_url: str
) -> None:
    ids = [f"evt_batch_{i}" for i in range(8)]
    before = group_commit_sizes("webhooks")
    first, rest = await batch_of(api, database_url, [stripe_event(id=i) for i in ids])

    assert first.status_code == 200
    assert [r.status_code for r in rest] == [200] * 8
    assert all(r.json()["duplicate"] is False for r in rest)
    assert len({r.json()["event_id"] for r in rest}) == 8
    after = group_commit_sizes("webhooks")
    # Two transactions: the first webhook alone, then the eight together.
    assert (after[0] - before[0], after[1] - before[1]) == (2, 9)
    for event_id in ids:
        assert await deliveries_of(database_url, event_id) == 1


async def test_duplicates_inside_a_batch_and_against_the_table_resolve_as_one_event(
    api: Api, database_url: str
) -> None:
    earlier = await send(api, stripe_event(id="evt_stored_before"))
    assert earlier.status_code == 200
    bodies = [
        stripe_event(id="evt_twice"),
        stripe_event(id="evt_twice"),
        stripe_event(id="evt_stored_before"),
        stripe_event(id="evt_once"),
    ]
    _, (twice_a, twice_b, old, once) = await batch_of(api, database_url, bodies)

    assert [r.status_code for r in (twice_a, twice_b, old, once)] == [200] * 4
    assert twice_a.json()["duplicate"] is False
    assert twice_b.json() == {"event_id": twice_a.json()["event_id"], "duplicate": True}
    assert old.json() == {"event_id": earlier.json()["event_id"], "duplicate": True}
    assert once.json()["duplicate"] is False
    assert await deliveries_of(database_url, "evt_twice") == 1
    assert await deliveries_of(database_url, "evt_stored_before") == 1


async def test_an_event_postgres_refuses_fails_alone_and_its_neighbours_are_stored(
    api: Api, database_url: str
) -> None:
    bad = json.dumps({"id": "evt_nul_in_batch", "type": "x", "note": "\u0000"}).encode()
    bodies = [stripe_event(id="evt_good_1"), bad, stripe_event(id="evt_good_2")]
    _, (good_1, refused, good_2) = await batch_of(api, database_url, bodies)

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_json"
    assert good_1.status_code == good_2.status_code == 200
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetch(
            "SELECT event_id FROM webhook_events WHERE event_id = ANY($1::text[])",
            ["evt_good_1", "evt_good_2", "evt_nul_in_batch"],
        )
    finally:
        await conn.close()
    assert sorted(r["event_id"] for r in stored) == ["evt_good_1", "evt_good_2"]


async def test_a_lone_webhook_is_committed_at_once_without_waiting_for_company(
    api: Api, database_url: str
) -> None:
    before = group_commit_sizes("webhooks")
    async with commit_held(database_url, "webhook_events") as watcher:
        lone = asyncio.create_task(send(api, stripe_event(id="evt_lone")))
        # Its INSERT reaches Postgres with nothing else queued: no timer held it back.
        await wait_for(lambda: insert_waits(watcher, "webhook_events"))
        assert committer(api.app.state.deps.db, router()).waiting == 0
    response = await lone
    assert response.status_code == 200
    after = group_commit_sizes("webhooks")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
