"""The gateway admin API end to end: HTTP, a real worker and a fake inkpass."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, Reply
from tests.helpers import (
    TEST_SECRETS,
    client_for,
    make_settings,
    running_worker,
    stripe_event,
    stripe_headers,
    wait_for_value,
)

BASE = "/api/v1/gateway/webhooks"
KEY = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}


@pytest.fixture
def settings(database_url: str, inkpass: FakeHTTPServer) -> Settings:
    return make_settings(database_url, INKPASS_INTERNAL_URL=inkpass.url, DELIVERY_MAX_ATTEMPTS="1")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with client_for(create_app(settings)) as c:
        yield c


async def send(
    client: AsyncTestClient[Litestar], event_type: str = "invoice.paid", **kw: Any
) -> str:
    body = stripe_event(event_type, **kw)
    response = await client.post(f"{BASE}/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    return str(response.json()["event_id"])


async def settled(db: asyncpg.Connection, event_id: str) -> str:
    status: str = await wait_for_value(
        db,
        "SELECT status FROM webhook_events WHERE id = $1",
        uuid.UUID(event_id),
        until=lambda s: s in ("delivered", "failed", "ignored"),
        within=15,
    )
    return status


async def test_list_filters_and_pages_newest_first(client: AsyncTestClient[Litestar]) -> None:
    ids = [await send(client, "invoice.paid") for _ in range(3)]
    ignored = await send(client, "customer.created")
    everything = (await client.get(f"{BASE}/events", headers=KEY)).json()
    assert [e["id"] for e in everything["items"]] == [ignored, *reversed(ids)]
    assert everything["next_cursor"] is None

    only = (await client.get(f"{BASE}/events?status=ignored", headers=KEY)).json()["items"]
    assert [e["id"] for e in only] == [ignored]
    typed = await client.get(f"{BASE}/events?event_type=invoice.paid&provider=stripe", headers=KEY)
    assert {e["id"] for e in typed.json()["items"]} == set(ids)
    assert (await client.get(f"{BASE}/events?provider=resend", headers=KEY)).json()["items"] == []

    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = f"{BASE}/events?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(query, headers=KEY)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [ignored, *reversed(ids)]

    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    later = await client.get(f"{BASE}/events", params={"since": future}, headers=KEY)
    assert later.json()["items"] == []
    earlier = await client.get(f"{BASE}/events", params={"until": future}, headers=KEY)
    assert len(earlier.json()["items"]) == 4


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=251",
        "limit=ten",
        "since=yesterday",
        "until=2026-13-01",
        "cursor=bm90IGEgY3Vyc29y",
        "cursor=%%%",
        "status=lost",
    ],
)
async def test_bad_list_parameters_are_400_with_the_error_body(
    client: AsyncTestClient[Litestar], query: str
) -> None:
    response = await client.get(f"{BASE}/events?{query}", headers=KEY)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "detail"}


async def test_admin_endpoints_need_a_key(client: AsyncTestClient[Litestar]) -> None:
    for method, path in [
        ("GET", "/events"),
        ("GET", f"/events/{uuid.uuid4()}"),
        ("POST", f"/events/{uuid.uuid4()}/replay"),
        ("GET", "/deliveries"),
        ("POST", f"/deliveries/{uuid.uuid4()}/retry"),
        ("POST", "/deliveries/retry"),
    ]:
        response = await client.request(method, f"{BASE}{path}", json={})
        assert response.status_code == 401, (method, path)


async def test_one_event_with_its_delivery_and_job(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    event_id = await send(client, id="evt_lookup")
    async with running_worker(settings):
        assert await settled(db, event_id) == "delivered"
    by_uuid = (await client.get(f"{BASE}/events/{event_id}", headers=KEY)).json()
    assert by_uuid["event_id"] == "evt_lookup"
    assert by_uuid["payload"]["id"] == "evt_lookup"
    assert by_uuid["signature"].startswith("t=")
    [delivery] = by_uuid["deliveries"]
    assert delivery["status"] == "success"
    assert delivery["job_status"] == "succeeded"
    assert delivery["result"]["status_code"] == 200
    by_provider = await client.get(f"{BASE}/events/evt_lookup?provider=stripe", headers=KEY)
    assert by_provider.json()["id"] == event_id

    missing = await client.get(f"{BASE}/events/{uuid.uuid4()}", headers=KEY)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    unknown = await client.get(f"{BASE}/events/evt_nope?provider=stripe", headers=KEY)
    assert unknown.status_code == 404
    not_uuid = await client.get(f"{BASE}/events/evt_lookup", headers=KEY)
    assert not_uuid.status_code == 400
    assert not_uuid.json()["error"] == "invalid_event_id"


async def audit_rows(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM audit_log ORDER BY id")


async def test_replay_routes_again_and_keeps_the_old_delivery(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    event_id = await send(client)
    async with running_worker(settings):
        assert await settled(db, event_id) == "delivered"
        response = await client.post(f"{BASE}/events/{event_id}/replay", headers=KEY)
        assert response.status_code == 200
        replayed = response.json()
        assert replayed["routes"] == [
            {
                "target_service": "inkpass",
                "task_name": "mimic.tasks.route_to_inkpass_invoice_event",
                "route_id": "00000000-0000-5000-8000-000000000004",
                "path": "/internal/billing/invoice-event",
                "body": "inkpass",
            }
        ]
        await inkpass.wait_for_requests(2)
        assert await settled(db, event_id) == "delivered"
    detail = (await client.get(f"{BASE}/events/{event_id}", headers=KEY)).json()
    old, new = detail["deliveries"]
    assert old["superseded"]
    assert not new["superseded"]
    assert new["id"] == replayed["delivery_ids"][0]
    keys = [r.headers["idempotency-key"] for r in inkpass.requests]
    assert keys == [old["id"], new["id"]]

    unknown = await client.post(f"{BASE}/events/{uuid.uuid4()}/replay", headers=KEY)
    assert unknown.status_code == 404
    rows = await audit_rows(db)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("replay", "ok"),
        ("replay", "not_found"),
    ]
    assert rows[0]["target_ids"] == [event_id]
    assert rows[0]["key_id"].startswith("key_")
    assert TEST_SECRETS["MIMIC_API_KEYS"] not in str([dict(r) for r in rows])


async def test_retry_a_failed_delivery_with_the_same_key(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    inkpass.script(Reply(status=422, body={"error": "not yet"}))
    event_id = await send(client)
    async with running_worker(settings):
        assert await settled(db, event_id) == "failed"
        dead = (await client.get(f"{BASE}/deliveries?status=failed", headers=KEY)).json()
        [delivery] = dead["items"]
        assert delivery["event_uuid"] == event_id
        assert "HTTP 422" in delivery["last_error"]
        response = await client.post(f"{BASE}/deliveries/{delivery['id']}/retry", headers=KEY)
        assert response.status_code == 200
        assert await settled(db, event_id) == "delivered"
    assert [r.headers["idempotency-key"] for r in inkpass.requests] == [delivery["id"]] * 2
    again = await client.post(f"{BASE}/deliveries/{delivery['id']}/retry", headers=KEY)
    assert again.status_code == 409
    assert again.json()["error"] == "delivery_not_failed"
    assert (
        await client.post(f"{BASE}/deliveries/{uuid.uuid4()}/retry", headers=KEY)
    ).status_code == 404
    assert [(r["action"], r["outcome"]) for r in await audit_rows(db)] == [
        ("retry", "ok"),
        ("retry", "delivery_not_failed"),
        ("retry", "not_found"),
    ]


async def test_bulk_retry_runs_as_a_job_and_reports_progress(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    inkpass.script(*[Reply(status=400)] * 3)
    events = [await send(client) for _ in range(3)]
    async with running_worker(settings):
        for event_id in events:
            assert await settled(db, event_id) == "failed"
        started = await client.post(
            f"{BASE}/deliveries/retry", json={"status": "failed", "target": "inkpass"}, headers=KEY
        )
        assert started.status_code == 202
        bulk = started.json()
        await wait_for_value(
            db,
            "SELECT status FROM bulk_retries WHERE id = $1",
            uuid.UUID(bulk["id"]),
            until=lambda s: s == "done",
        )
        for event_id in events:
            assert await settled(db, event_id) == "delivered"
    progress = (await client.get(f"{BASE}/deliveries/retry/{bulk['id']}", headers=KEY)).json()
    assert (progress["status"], progress["total"], progress["retried"]) == ("done", 3, 3)
    assert len(inkpass.requests) == 6
    too_many = await client.post(f"{BASE}/deliveries/retry", json={"limit": 10_001}, headers=KEY)
    assert too_many.status_code == 400
    wrong_status = await client.post(
        f"{BASE}/deliveries/retry", json={"status": "success"}, headers=KEY
    )
    assert wrong_status.status_code == 400
    [row] = await audit_rows(db)
    assert (row["action"], row["outcome"], row["target_ids"]) == ("bulk_retry", "ok", [bulk["id"]])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/events/not-a-uuid"),
        ("POST", "/events/not-a-uuid/replay"),
        ("POST", "/deliveries/not-a-uuid/retry"),
        ("GET", "/deliveries/retry/not-a-uuid"),
        ("GET", "/deliveries?since=soon"),
        ("GET", "/deliveries?cursor=bm9wZQ"),
        ("GET", "/deliveries?status=lost"),
        ("POST", "/deliveries/retry"),
    ],
)
async def test_bad_ids_and_bodies_are_4xx_never_5xx(
    client: AsyncTestClient[Litestar], method: str, path: str
) -> None:
    body: Any = {"since": "not a date"} if path == "/deliveries/retry" else None
    response = await client.request(method, f"{BASE}{path}", json=body, headers=KEY)
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) == {"error", "detail"}


async def test_a_replay_by_the_providers_id_says_how_to_find_mimics(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.post(f"{BASE}/events/evt_1NG8Du2eZvKYlo2C/replay", headers=KEY)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_event_id"
    assert "?provider=stripe" in response.json()["detail"]


async def test_an_unknown_filter_is_a_400_naming_the_known_ones(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get(f"{BASE}/events?type=invoice.paid", headers=KEY)
    assert response.status_code == 400
    assert response.json()["error"] == "unknown_parameter"
    assert "type" in response.json()["detail"]
    assert "event_type" in response.json()["detail"]
    deliveries = await client.get(f"{BASE}/deliveries?state=failed", headers=KEY)
    assert deliveries.status_code == 400
    assert "status" in deliveries.json()["detail"]
    assert (
        await client.get(f"{BASE}/events?event_type=invoice.paid", headers=KEY)
    ).status_code == 200
