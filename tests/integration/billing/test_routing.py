"""Webhook -> real procrastinate worker -> real local inkpass, with retries and roll-up."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app, router
from mimic.core.db import Connection
from mimic.core.deps import open_deps
from mimic.core.jobs import QUEUE_WEBHOOKS, JobToDefer, defer_jobs
from mimic.core.settings import Settings
from mimic.events.delivery import run_delivery
from mimic.events.gateway import load_routes
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

URL = "/api/v1/gateway/webhooks/stripe"


def routing_settings(database_url: str, inkpass: FakeHTTPServer, **extra: str) -> Settings:
    env = {"INKPASS_TIMEOUT_SECONDS": "0.5", "DELIVERY_MAX_ATTEMPTS": "3", **extra}
    return make_settings(
        database_url,
        INKPASS_INTERNAL_URL=inkpass.url,
        **env,
    )


@pytest.fixture
def settings(database_url: str, inkpass: FakeHTTPServer) -> Settings:
    return routing_settings(database_url, inkpass)


async def send(client: AsyncTestClient[Litestar], event_type: str, **fields: object) -> str:
    body = stripe_event(event_type, **fields)
    response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    return str(response.json()["event_id"])


async def event_settled(db: asyncpg.Connection, event_id: str) -> asyncpg.Record:
    await wait_for_value(
        db,
        "SELECT status FROM webhook_events WHERE id = $1",
        uuid.UUID(event_id),
        until=lambda v: v in ("delivered", "failed"),
        within=15,
    )
    row = await db.fetchrow("SELECT * FROM webhook_events WHERE id = $1", uuid.UUID(event_id))
    assert row is not None
    return row


async def delivery_of(db: asyncpg.Connection, event_id: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT * FROM webhook_deliveries WHERE event_id = $1", uuid.UUID(event_id)
    )
    assert row is not None
    return row


async def job_status(db: asyncpg.Connection, job_id: int) -> str:
    status = await wait_for_value(
        db,
        "SELECT status FROM procrastinate_jobs WHERE id = $1",
        job_id,
        until=lambda v: v in ("succeeded", "failed"),
    )
    return str(status)


async def test_2xx_marks_success_with_contract_and_headers(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    inkpass.script(Reply(status=201, body={"ok": True}))
    event_id = await send(
        client,
        "checkout.session.completed",
        id="evt_route_ok",
        obj={
            "id": "cs_1",
            "object": "checkout.session",
            "customer": "cus_1",
            "customer_email": "user@example.com",
            "subscription": "sub_1",
            "metadata": {"product_type": "pro"},
        },
    )
    async with running_worker(settings):
        event = await event_settled(db, event_id)
    assert event["status"] == "delivered"
    assert event["processed_at"] is not None
    assert event["retry_count"] == 0
    delivery = await delivery_of(db, event_id)
    assert delivery["status"] == "success"
    assert delivery["attempt_count"] == 1
    assert json.loads(delivery["result"]) == {"status_code": 201, "body": '{"ok": true}'}
    assert await job_status(db, delivery["job_id"]) == "succeeded"

    [call] = inkpass.requests
    assert call.method == "POST"
    assert call.path == "/internal/billing/subscription-created"
    assert call.headers["x-api-key"] == TEST_SECRETS["MIMIC_SERVICE_API_KEY"]
    assert call.headers["idempotency-key"] == str(delivery["id"])
    body = call.json()
    assert body["event_id"] == "evt_route_ok"
    assert body["event_type"] == "checkout.session.completed"
    assert body["mimic_event_id"] == event_id
    assert body["customer_id"] == "cus_1"
    assert body["customer_email"] == "user@example.com"
    assert body["subscription_id"] == "sub_1"
    assert body["product_type"] == "pro"


@pytest.mark.parametrize(
    "first",
    [
        Reply(status=500),
        Reply(status=503),
        Reply(status=429),
        Reply(status=408),
        Reply(drop=True),
        Reply(delay=1.0),  # slower than INKPASS_TIMEOUT_SECONDS
    ],
    ids=["500", "503", "429", "408", "dropped", "slow"],
)
async def test_transient_failure_is_retried_with_the_same_idempotency_key(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
    first: Reply,
) -> None:
    inkpass.script(first, Reply(status=200))
    event_id = await send(client, "invoice.paid")
    async with running_worker(settings):
        event = await event_settled(db, event_id)
    assert event["status"] == "delivered"
    assert event["retry_count"] == 1
    delivery = await delivery_of(db, event_id)
    assert delivery["status"] == "success"
    assert delivery["attempt_count"] == 2
    assert delivery["last_error"] is not None
    keys = {r.headers["idempotency-key"] for r in inkpass.requests}
    assert keys == {str(delivery["id"])}
    assert len(inkpass.requests) == 2


async def test_retry_after_is_honoured(
    client: AsyncTestClient[Litestar],
    database_url: str,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    # Backoff alone would wait at most 0.1 s here; Retry-After asks for 2 s.
    settings = routing_settings(
        database_url,
        inkpass,
        DELIVERY_BACKOFF_BASE_SECONDS="0.05",
        DELIVERY_BACKOFF_MAX_SECONDS="10",
    )
    inkpass.script(Reply(status=503, headers={"Retry-After": "2"}), Reply(status=200))
    event_id = await send(client, "invoice.paid")
    async with running_worker(settings):
        await event_settled(db, event_id)
    first, second = inkpass.requests
    assert second.at - first.at >= 1.9


async def test_other_4xx_fails_at_once(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    inkpass.script(Reply(status=400, body={"error": "unknown customer"}))
    event_id = await send(client, "customer.subscription.deleted")
    async with running_worker(settings):
        event = await event_settled(db, event_id)
        delivery = await delivery_of(db, event_id)
        assert await job_status(db, delivery["job_id"]) == "failed"
    assert event["status"] == "failed"
    assert "HTTP 400" in event["error_message"]
    assert event["processed_at"] is not None
    assert delivery["status"] == "failed"
    assert delivery["attempt_count"] == 1
    assert len(inkpass.requests) == 1


async def test_exhausted_retries_end_failed(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    inkpass.script(*[Reply(status=500, body={"error": "boom"})] * 5)
    event_id = await send(client, "customer.subscription.updated")
    async with running_worker(settings):
        event = await event_settled(db, event_id)
    delivery = await delivery_of(db, event_id)
    assert len(inkpass.requests) == 3  # DELIVERY_MAX_ATTEMPTS
    assert delivery["status"] == "failed"
    assert delivery["attempt_count"] == 3
    assert "HTTP 500" in delivery["last_error"]
    assert event["status"] == "failed"
    assert event["retry_count"] == 2


async def test_a_succeeded_delivery_is_never_called_again(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    event_id = await send(client, "invoice.paid")
    async with running_worker(settings):
        await event_settled(db, event_id)
        delivery = await delivery_of(db, event_id)
        # A second job for the same delivery (an operator retry, a stalled-job retry).
        async with db.transaction():
            [job_id] = await defer_jobs(
                Connection(db),
                [
                    JobToDefer(
                        task_name=delivery["task_name"],
                        queue=QUEUE_WEBHOOKS,
                        args={"delivery_id": str(delivery["id"])},
                    )
                ],
            )
        assert await job_status(db, job_id) == "succeeded"
    assert len(inkpass.requests) == 1
    assert (await delivery_of(db, event_id))["attempt_count"] == 1


async def test_worker_wakes_on_notify_not_polling(
    database_url: str, db: asyncpg.Connection, inkpass: FakeHTTPServer
) -> None:
    # The worker polls only every 60 s here: a delivery within seconds can only come from
    # the NOTIFY that the ingest commit sends (polling alone would take up to a minute).
    settings = routing_settings(database_url, inkpass, WORKER_POLL_SECONDS="60")
    async with running_worker(settings), client_for(create_app(settings)) as client:
        # The worker's first poll (at start) is done before the event is sent.
        await asyncio.sleep(1.0)  # nothing to wait on: the first poll finds an empty queue
        started = time.monotonic()
        await send(client, "invoice.paid")
        await inkpass.wait_for_requests(1, within=15)
        took = time.monotonic() - started
    assert took < 10, f"delivered after {took:.1f} s: woken by the 60 s poll, not by NOTIFY"


async def test_overlapping_attempts_cannot_undo_a_success(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    # Two runs of one delivery overlap (e.g. a stalled-job retry while the first still
    # runs): the first gets 200, the later one a 409 that must not overwrite the success.
    inkpass.script(Reply(status=200, delay=0.3), Reply(status=409, delay=0.8))
    event_id = await send(client, "invoice.paid")
    delivery = await delivery_of(db, event_id)
    async with open_deps(settings) as deps:
        slow = asyncio.create_task(run_delivery(deps, str(delivery["id"])))
        await inkpass.wait_for_requests(1)
        # Claims while the first is in flight; its 409 arrives after the first's 200.
        await run_delivery(deps, str(delivery["id"]))
        await slow
    assert len(inkpass.requests) == 2
    final = await delivery_of(db, event_id)
    assert final["status"] == "success"
    event = await db.fetchrow(
        "SELECT status FROM webhook_events WHERE id = $1", uuid.UUID(event_id)
    )
    assert event is not None
    assert event["status"] == "delivered"


async def test_retries_run_when_due_not_on_a_coarse_poll(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    # Backoff 0.4 s doubling: the retries are due after 0.2-0.4, 0.4-0.8 and 0.8-1.6 s.
    # They may start up to one poll (WORKER_POLL_SECONDS, the default 0.5) late, never 5 s.
    inkpass.script(Reply(status=500), Reply(status=500), Reply(status=500))
    settings = routing_settings(
        database_url,
        inkpass,
        DELIVERY_BACKOFF_BASE_SECONDS="0.4",
        DELIVERY_BACKOFF_MAX_SECONDS="10",
        DELIVERY_MAX_ATTEMPTS="5",
        WORKER_POLL_SECONDS="0.5",
        STALLED_SWEEP_SECONDS="60",  # its jobs would wake the worker every second
    )
    async with running_worker(settings), client_for(create_app(settings)) as client:
        await send(client, "invoice.paid")
        await inkpass.wait_for_requests(4, within=20)
    arrivals = [r.at for r in inkpass.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for failures, gap in enumerate(gaps):
        ceiling = 0.4 * 2**failures
        assert ceiling / 2 - 0.05 <= gap <= ceiling + 0.5 + 0.4, (failures, gaps)


async def test_retries_after_a_shared_failure_are_spread_by_jitter(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    # Six deliveries fail at once (inkpass down for a moment): their retries must not all
    # come back in the same instant.
    inkpass.script(*[Reply(status=503)] * 6)
    settings = routing_settings(
        database_url,
        inkpass,
        DELIVERY_BACKOFF_BASE_SECONDS="1",
        DELIVERY_BACKOFF_MAX_SECONDS="10",
        WORKER_POLL_SECONDS="0.1",  # finer than the jitter, so the test sees the jitter
        STALLED_SWEEP_SECONDS="60",
    )
    async with client_for(create_app(settings)) as client:
        for _ in range(6):
            await send(client, "invoice.paid")
    async with running_worker(settings):
        await inkpass.wait_for_requests(12, within=20)
    first: dict[str, float] = {}
    retry_gaps: list[float] = []
    for request in inkpass.requests:
        key = request.headers["idempotency-key"]
        if key in first:
            retry_gaps.append(request.at - first[key])
        else:
            first[key] = request.at
    assert len(retry_gaps) == 6
    assert all(0.45 <= gap <= 1.0 + 0.2 + 0.4 for gap in retry_gaps), retry_gaps
    assert max(retry_gaps) - min(retry_gaps) > 0.1, f"retries in lockstep: {retry_gaps}"


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("checkout.session.completed", "subscription_created"),
        ("customer.subscription.created", "subscription_created"),
        ("customer.subscription.updated", "subscription_updated"),
        ("customer.subscription.deleted", "subscription_deleted"),
        ("invoice.payment_failed", "invoice_event"),
        ("invoice.payment_succeeded", "invoice_event"),
        ("invoice.paid", "invoice_event"),
    ],
)
async def test_the_seed_routes_are_stored_defaults(
    db: asyncpg.Connection, event_type: str, kind: str
) -> None:
    # The seed's routing table, now rows: each of its Stripe types goes to inkpass, under
    # the seed's task name, with the inkpass contract as body.
    stored = await load_routes(Connection(db))
    [route] = router().routes_for(stored, "stripe", event_type, {})
    assert route.target_service == "inkpass"
    assert route.task_name == f"mimic.tasks.route_to_inkpass_{kind}"
    assert route.body == "inkpass"
    assert route.path == f"/internal/billing/{kind.replace('_', '-')}"


async def test_unrouted_types_have_no_route(db: asyncpg.Connection) -> None:
    stored = await load_routes(Connection(db))
    assert router().routes_for(stored, "stripe", "customer.created", {}) == []
