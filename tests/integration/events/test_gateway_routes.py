"""Routes are data: destinations and routes through the admin API, delivered by a real worker
to local destinations that check what they receive as a consumer would."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from mimic.app import create_app, router
from mimic.core.db import Connection
from mimic.core.deps import open_deps
from mimic.core.settings import Settings
from mimic.events.gateway import load_routes, rotate_secrets
from mimic.events.repository import store_events
from mimic.events.schemas import IncomingEvent
from tests.fakes import FakeHTTPServer, Received, Reply
from tests.helpers import (
    ADMIN,
    TEST_SECRETS,
    client_for,
    make_settings,
    running_worker,
    stripe_event,
    stripe_headers,
    wait_for_value,
)

DESTINATIONS = "/api/v1/gateway/destinations"
ROUTES = "/api/v1/gateway/routes"
STRIPE = "/api/v1/gateway/webhooks/stripe"
RESEND = "/api/v1/gateway/webhooks/resend"
EVENTS = "/api/v1/gateway/webhooks/events"


@pytest.fixture
def crm() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as server:
        yield server


@pytest.fixture
def settings(database_url: str, inkpass: FakeHTTPServer) -> Settings:
    return make_settings(database_url, INKPASS_INTERNAL_URL=inkpass.url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with client_for(create_app(settings)) as client:
        yield client


async def post(client: AsyncTestClient[Litestar], path: str, body: Any, code: int = 201) -> Any:
    response = await client.post(path, json=body, headers=ADMIN)
    assert response.status_code == code, response.text
    return response.json()


async def destination(
    client: AsyncTestClient[Litestar], server: FakeHTTPServer, **fields: Any
) -> Any:
    return await post(client, DESTINATIONS, {"name": "crm", "url": server.url, **fields})


async def route(client: AsyncTestClient[Litestar], **fields: Any) -> Any:
    body = {"provider": "stripe", "event_types": ["customer.*"], "destination": "crm", **fields}
    return await post(client, ROUTES, body)


async def send_stripe(client: AsyncTestClient[Litestar], body: bytes) -> str:
    response = await client.post(STRIPE, content=body, headers=stripe_headers(body))
    assert response.status_code == 200, response.text
    return str(response.json()["event_id"])


async def event_status(db: asyncpg.Connection, event_id: str, *wanted: str) -> str:
    found: str = await wait_for_value(
        db,
        "SELECT status FROM webhook_events WHERE id = $1",
        uuid.UUID(event_id),
        until=lambda v: v in wanted,
        within=15,
    )
    return found


def one_slot(settings: Settings) -> Settings:
    """The same settings for a worker with one webhook slot (so the order is the queue's)."""
    url = settings.database.url.get() if settings.database.url else None
    return make_settings(
        url, INKPASS_INTERNAL_URL=settings.inkpass.url, WORKER_CONCURRENCY_WEBHOOKS="1"
    )


def verify(secret: str, request: Received) -> Any:
    """As a consumer does: the standardwebhooks library checks the webhook-* headers."""
    return Webhook(secret).verify(request.body, request.headers)


async def test_a_route_made_through_the_api_delivers_the_next_event_signed(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    # The API has read (and cached) the routes before the route exists.
    await send_stripe(client, stripe_event("customer.created", obj={"id": "cus_0"}))
    made = await destination(
        client, crm, signing=True, api_key={"value": "crm-key-0123456789"}, headers={"X-Team": "g"}
    )
    secret = made["signing_secret"]
    assert secret.startswith("whsec_")
    assert made["api_key"] == {"header": "X-API-Key", "last4": "6789"}
    await route(client, path="/hooks/stripe", name="customers-to-crm")
    body = stripe_event("customer.created", obj={"id": "cus_1", "object": "customer"})
    event_id = await send_stripe(client, body)
    async with running_worker(settings):
        assert await event_status(db, event_id, "delivered", "failed") == "delivered"
    [request] = crm.requests  # the first event, before the route, went nowhere
    assert request.path == "/hooks/stripe"
    envelope = verify(secret, request)
    assert envelope["id"] == event_id
    assert envelope["provider"] == "stripe"
    assert envelope["type"] == "customer.created"
    assert envelope["payload"] == json.loads(body)
    assert request.headers["x-api-key"] == "crm-key-0123456789"
    assert request.headers["x-team"] == "g"
    delivery = await db.fetchrow(
        "SELECT id, route_id FROM webhook_deliveries WHERE event_id = $1", uuid.UUID(event_id)
    )
    assert delivery is not None
    # webhook-id is the delivery's id, as is the Idempotency-Key: stable across retries.
    assert request.headers["webhook-id"] == str(delivery["id"])
    assert request.headers["idempotency-key"] == str(delivery["id"])
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "QUJD" * 8, request)  # another secret does not verify
    detail = (await client.get(f"{EVENTS}/{event_id}", headers=ADMIN)).json()
    assert detail["matched_routes"] == [
        {"route_id": str(delivery["route_id"]), "name": "customers-to-crm", "destination": "crm"}
    ]
    # The secret and the key's value are never shown again.
    listed = (await client.get(DESTINATIONS, headers=ADMIN)).text
    assert secret not in listed
    assert "crm-key-0123456789" not in listed


async def test_a_filter_that_does_not_match_stores_the_event_as_ignored(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    await destination(client, crm)
    await route(
        client,
        event_types=["customer.subscription.*"],
        filter=[
            {"path": "data.object.metadata.product_type", "op": "in", "value": ["pro", "team"]},
            {"path": "data.object.cancel_at_period_end", "op": "eq", "value": False},
        ],
    )
    obj = {"id": "sub_1", "metadata": {"product_type": "pro"}, "cancel_at_period_end": False}
    matching = await send_stripe(client, stripe_event("customer.subscription.paused", obj=obj))
    other = {**obj, "metadata": {"product_type": "free"}}
    ignored = await send_stripe(client, stripe_event("customer.subscription.paused", obj=other))
    # false is not 0: a filter compares JSON values, booleans only with booleans
    zero = {**obj, "cancel_at_period_end": 0}
    also_ignored = await send_stripe(client, stripe_event("customer.subscription.paused", obj=zero))
    async with running_worker(settings):
        assert await event_status(db, matching, "delivered") == "delivered"
    assert await event_status(db, ignored, "ignored") == "ignored"
    assert await event_status(db, also_ignored, "ignored") == "ignored"
    assert [json.loads(r.body)["id"] for r in crm.requests] == [matching]


async def test_every_provider_routes_and_the_event_body_is_the_bytes_received(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    await destination(client, crm)
    await route(client, provider="resend", event_types=["email.bounced"], body="event")
    # Odd spacing and key order: what arrives must be these bytes, not a re-encoding.
    raw = b'{"type":"email.bounced",  "created_at":"2026-12-05T10:00:00Z","data":{"email_id":"x"}}'
    msg_id = "msg_" + uuid.uuid4().hex
    now = datetime.datetime.now(datetime.UTC)
    signature = SvixWebhook(TEST_SECRETS["RESEND_WEBHOOK_SECRET"]).sign(msg_id, now, raw.decode())
    headers = {
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }
    response = await client.post(RESEND, content=raw, headers=headers)
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    async with running_worker(settings):
        await crm.wait_for_requests(1)
        # The email tracking handler also took it (Mimic's own, beside the stored route).
        await event_status(db, event_id, "delivered", "failed")
    [request] = crm.requests
    assert request.body == raw
    assert request.headers["x-mimic-provider"] == "resend"
    assert request.headers["x-mimic-event-type"] == "email.bounced"
    targets = await db.fetch(
        "SELECT target_service FROM webhook_deliveries WHERE event_id = $1 ORDER BY target_service",
        uuid.UUID(event_id),
    )
    assert [t["target_service"] for t in targets] == ["crm", "mimic"]


async def test_a_paused_destination_gets_nothing_until_resumed_then_everything_oldest_first(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    await destination(client, crm)
    await route(client)
    paused = await post(client, f"{DESTINATIONS}/crm/pause", None, code=200)
    assert paused["state"] == "paused"
    ids = [
        await send_stripe(client, stripe_event("customer.updated", obj={"id": f"cus_{i}"}))
        for i in range(6)
    ]
    async with running_worker(one_slot(settings)):
        await wait_for_value(
            db,
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'paused'",
            until=lambda n: n == 6,
            within=15,
        )
        assert crm.requests == []
        listed = (await client.get(f"{DESTINATIONS}/crm", headers=ADMIN)).json()
        assert listed["unfinished_deliveries"] == 6
        failed = await client.get(
            "/api/v1/gateway/webhooks/deliveries", params={"status": "paused"}, headers=ADMIN
        )
        assert len(failed.json()["items"]) == 6
        resumed = await post(client, f"{DESTINATIONS}/crm/resume", None, code=200)
        assert resumed["state"] == "active"
        await crm.wait_for_requests(6, within=15)
        for event_id in ids:
            assert await event_status(db, event_id, "delivered") == "delivered"
    assert [json.loads(r.body)["id"] for r in crm.requests] == ids
    attempts = await db.fetch("SELECT attempt_count FROM webhook_deliveries")
    assert {a["attempt_count"] for a in attempts} == {1}  # waiting spent no attempt


async def test_deleting_a_destination_in_use_needs_force_and_fails_its_deliveries(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    await destination(client, crm)
    await route(client)
    await post(client, f"{DESTINATIONS}/crm/pause", None, code=200)
    event_id = await send_stripe(client, stripe_event("customer.updated"))
    refused = await client.delete(f"{DESTINATIONS}/crm", headers=ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"] == "destination_in_use"
    forced = await client.delete(f"{DESTINATIONS}/crm", params={"force": "true"}, headers=ADMIN)
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"name": "crm", "routes_deleted": 1, "deliveries_failed": 1}
    assert await event_status(db, event_id, "failed") == "failed"
    delivery = await db.fetchrow("SELECT status, last_error FROM webhook_deliveries")
    assert delivery is not None
    assert (delivery["status"], delivery["last_error"]) == ("failed", "destination_deleted")
    async with running_worker(settings):  # its queued job finds nothing to send
        await wait_for_value(
            db,
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
            until=lambda n: n == 0,
        )
    assert crm.requests == []
    assert (await client.get(ROUTES, headers=ADMIN)).json()[4:] == []  # only the seed's four


async def test_rotation_signs_with_both_secrets_until_the_old_one_expires(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    old = (await destination(client, crm, signing=True))["signing_secret"]
    await route(client)
    rotated = await post(
        client, f"{DESTINATIONS}/crm/rotate-secret", {"previous_valid_seconds": 3600}, code=200
    )
    new = rotated["signing_secret"]
    assert new != old
    assert [s["expires_at"] is None for s in rotated["signing_secrets"]] == [True, False]
    event_id = await send_stripe(client, stripe_event("customer.updated"))
    async with running_worker(settings):
        await event_status(db, event_id, "delivered")
    [request] = crm.requests
    assert len(request.headers["webhook-signature"].split()) == 2
    verify(old, request)  # a consumer not switched yet
    verify(new, request)  # and one that has
    # With no overlap, only the new secret signs.
    await post(client, f"{DESTINATIONS}/crm/rotate-secret", {"previous_valid_seconds": 0}, 200)


async def test_bad_input_is_a_4xx_naming_the_field(
    client: AsyncTestClient[Litestar], crm: FakeHTTPServer
) -> None:
    await destination(client, crm)
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (DESTINATIONS, {"name": "x", "url": "ftp://host"}, "invalid_url", "url"),
        (DESTINATIONS, {"name": "x", "url": "http://h/?a=1"}, "invalid_url", "url"),
        (DESTINATIONS, {"name": "Bad Name", "url": "http://h"}, "bad_request", "name"),
        (DESTINATIONS, {"name": "crm", "url": "http://h"}, "destination_exists", "crm"),
        (
            DESTINATIONS,
            {"name": "y", "url": "http://h", "headers": {"Idempotency-Key": "1"}},
            "invalid_headers",
            "headers.Idempotency-Key",
        ),
        (
            ROUTES,
            {"provider": "stripe", "event_types": ["customer.*"], "destination": "nope"},
            "unknown_destination",
            "destination",
        ),
        (
            ROUTES,
            {"provider": "stripe", "event_types": ["custmer.*"], "destination": "crm"},
            "invalid_event_types",
            "event_types[0]",
        ),
        (
            ROUTES,
            {
                "provider": "resend",
                "event_types": ["email.*", "invoice.paid"],
                "destination": "crm",
            },
            "invalid_event_types",
            "event_types[1]",
        ),
        (
            ROUTES,
            {
                "provider": "stripe",
                "event_types": ["*"],
                "destination": "crm",
                "filter": [{"path": "data..id", "op": "eq", "value": 1}],
            },
            "invalid_filter",
            "filter[0].path",
        ),
        (
            ROUTES,
            {
                "provider": "stripe",
                "event_types": ["*"],
                "destination": "crm",
                "filter": [{"path": "data.id", "op": "in", "value": "pro"}],
            },
            "invalid_filter",
            "filter[0].value",
        ),
        (
            ROUTES,
            {
                "provider": "stripe",
                "event_types": ["*"],
                "destination": "crm",
                "filter": [{"path": "data.id", "op": "matches", "value": "x"}],
            },
            "bad_request",
            "op",
        ),
    ]
    for path, body, code, field in cases:
        response = await client.post(path, json=body, headers=ADMIN)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.json()["error"] == code, (body, response.text)
        assert field in response.json()["detail"], (body, response.text)
    assert len((await client.get(ROUTES, headers=ADMIN)).json()) == 4  # nothing stored


async def test_inkpass_is_defined_by_settings_and_can_still_be_paused(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    inkpass: FakeHTTPServer,
) -> None:
    shown = (await client.get(f"{DESTINATIONS}/inkpass", headers=ADMIN)).json()
    assert shown["managed_by"] == "settings"
    assert shown["url"] == inkpass.url
    assert shown["api_key"] is None  # MIMIC_SERVICE_API_KEY is the settings', not shown
    refused = await client.patch(
        f"{DESTINATIONS}/inkpass", json={"url": "http://elsewhere"}, headers=ADMIN
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "managed_by_config"
    await post(client, f"{DESTINATIONS}/inkpass/pause", None, code=200)
    event_id = await send_stripe(client, stripe_event("invoice.paid"))
    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT status FROM webhook_deliveries",
            until=lambda s: s == "paused",
        )
        assert inkpass.requests == []
        await post(client, f"{DESTINATIONS}/inkpass/resume", None, code=200)
        assert await event_status(db, event_id, "delivered") == "delivered"
    [request] = inkpass.requests
    assert request.path == "/internal/billing/invoice-event"
    assert request.headers["x-api-key"] == TEST_SECRETS["MIMIC_SERVICE_API_KEY"]


async def test_the_dry_run_shows_matches_and_the_request_with_secrets_masked(
    client: AsyncTestClient[Litestar], crm: FakeHTTPServer
) -> None:
    await destination(client, crm, signing=True, api_key={"value": "crm-key-0123456789"})
    made = await route(client, path="/in", event_types=["invoice.*"])
    payload = {"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}
    answer = await post(client, f"{ROUTES}/test", {"provider": "stripe", "payload": payload}, 200)
    assert answer["event_type"] == "invoice.paid"
    assert not answer["ignored"]
    by_destination = {m["route"]["destination"]: m for m in answer["matched"]}
    assert set(by_destination) == {"crm", "inkpass"}  # and the seed's invoice route
    crm_match = by_destination["crm"]
    assert crm_match["route"]["id"] == made["id"]
    assert crm_match["request"]["url"] == crm.url + "/in"
    assert crm_match["request"]["headers"]["X-API-Key"] == "****6789"
    assert crm_match["request"]["headers"]["webhook-signature"] == "v1,<signature>"
    assert crm_match["request"]["body"]["payload"] == payload
    assert "crm-key-0123456789" not in json.dumps(answer)
    assert crm.requests == []  # nothing was sent
    nothing = {"provider": "stripe", "payload": {"type": "customer.created"}}
    assert (await post(client, f"{ROUTES}/test", nothing, 200))["ignored"] is True
    tracked = {"provider": "postmark", "payload": {"RecordType": "Bounce"}}
    handled = await post(client, f"{ROUTES}/test", tracked, 200)
    assert handled["handlers"] == ["mimic.tasks.handle_email_delivery_event"]
    assert handled["matched"] == []
    assert handled["ignored"] is False
    untyped = await client.post(
        f"{ROUTES}/test", json={"provider": "stripe", "payload": {}}, headers=ADMIN
    )
    assert untyped.status_code == 400
    assert "event_type" in untyped.json()["detail"]


async def test_every_change_is_in_the_audit_log(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, crm: FakeHTTPServer
) -> None:
    await destination(client, crm, signing=True)
    made = await route(client)
    await client.patch(f"{ROUTES}/{made['id']}", json={"path": "/x"}, headers=ADMIN)
    await client.patch(f"{DESTINATIONS}/crm", json={"policy": {"max_attempts": 3}}, headers=ADMIN)
    await post(client, f"{DESTINATIONS}/crm/pause", None, code=200)
    await post(client, f"{DESTINATIONS}/crm/resume", None, code=200)
    await post(client, f"{DESTINATIONS}/crm/rotate-secret", None, code=200)
    await client.delete(f"{ROUTES}/{made['id']}", headers=ADMIN)
    await client.delete(f"{DESTINATIONS}/crm", headers=ADMIN)
    rows = await db.fetch("SELECT action, outcome, key_id FROM audit_log ORDER BY id")
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("create_destination", "ok"),
        ("create_route", "ok"),
        ("update_route", "ok"),
        ("update_destination", "ok"),
        ("pause_destination", "ok"),
        ("resume_destination", "ok"),
        ("rotate_destination_secret", "ok"),
        ("delete_route", "ok"),
        ("delete_destination", "ok"),
    ]
    assert {r["key_id"] for r in rows} != {""}
    text = json.dumps([dict(r) for r in await db.fetch("SELECT * FROM audit_log")], default=str)
    assert "whsec_" not in text


async def test_a_destination_answering_429_is_retried_after_its_retry_after(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    await destination(client, crm, policy={"max_attempts": 2, "backoff_base_seconds": 30})
    await route(client)
    crm.script(Reply(status=429, headers={"Retry-After": "1"}))
    event_id = await send_stripe(client, stripe_event("customer.updated"))
    async with running_worker(settings):
        assert await event_status(db, event_id, "delivered") == "delivered"
    first, second = crm.requests
    # Its own policy (base 30 s) would wait far longer: Retry-After decided.
    assert 0.9 <= second.at - first.at < 5


async def test_deliveries_that_arrive_together_share_a_job_and_a_retry_moves_alone(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    await destination(client, crm)
    await route(client)
    # One commit batch of three events (as the webhook group commit stores them under load).
    bodies = [stripe_event("customer.updated", obj={"id": f"cus_{i}"}) for i in range(3)]
    events = [
        IncomingEvent(
            provider="stripe",
            event_id=json.loads(b)["id"],
            event_type="customer.updated",
            raw_body=b,
            payload_json=b.decode(),
            signature=None,
        )
        for b in bodies
    ]
    stored = await load_routes(Connection(db))
    rows = [(uuid.uuid4(), e, True) for e in events]
    deliveries = [
        (event_id, uuid.uuid4(), r)
        for event_id, e, _ in rows
        for r in router().routes_for(stored, "stripe", e.event_type, {})
    ]
    await store_events(Connection(db), rows, deliveries, stored.version)
    [job] = await db.fetch("SELECT id, args FROM procrastinate_jobs")
    assert json.loads(job["args"])["delivery_ids"] == [str(d) for _, d, _ in deliveries]
    crm.script(Reply(status=200), Reply(status=503), Reply(status=200))
    async with running_worker(settings):
        for event_id, _, _ in rows:
            assert await event_status(db, str(event_id), "delivered") == "delivered"
    keys = [r.headers["idempotency-key"] for r in crm.requests]
    assert len(keys) == 4
    [retried] = [k for k in set(keys) if keys.count(k) == 2]
    jobs = {
        str(r["id"]): r["job_id"]
        for r in await db.fetch("SELECT id, job_id FROM webhook_deliveries")
    }
    # The one retried moved to a job of its own; the other two stayed with the group's.
    assert jobs[retried] != job["id"]
    assert sorted(jobs.values()) == sorted([job["id"], job["id"], jobs[retried]])
    statuses = await db.fetch("SELECT status FROM procrastinate_jobs ORDER BY id")
    assert [s["status"] for s in statuses][:1] == ["succeeded"]


async def test_a_rate_limited_destination_waits_without_holding_a_slot(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    # The hostile (or just slow) destination: one delivery per 20 s. Its deliveries must not
    # sit in the worker's only slot while the other destination's wait behind them.
    await destination(client, crm, policy={"rate_per_second": 0.05})
    await route(client)
    with FakeHTTPServer() as erp:
        await post(client, DESTINATIONS, {"name": "erp", "url": erp.url})
        await post(
            client,
            ROUTES,
            {"provider": "stripe", "event_types": ["invoice.*"], "destination": "erp"},
        )
        slow = [
            await send_stripe(client, stripe_event("customer.updated", obj={"id": f"cus_{i}"}))
            for i in range(4)
        ]
        fast = [
            await send_stripe(client, stripe_event("invoice.created", obj={"id": f"in_{i}"}))
            for i in range(4)
        ]
        async with running_worker(one_slot(settings)):
            for event_id in fast:
                assert await event_status(db, event_id, "delivered") == "delivered"
            waiting = await db.fetch(
                "SELECT d.attempt_count, d.last_error FROM webhook_deliveries d "
                "WHERE d.target_service = 'crm' AND d.status <> 'success'"
            )
        assert len(erp.requests) == 4
    assert len(crm.requests) == 1  # one turn in the first 20 s
    assert len(waiting) == 3
    # Waiting for a turn spends no attempt, and says why.
    assert {w["attempt_count"] for w in waiting} == {0}
    assert all("rate limited" in (w["last_error"] or "") for w in waiting)
    statuses = await db.fetch(
        "SELECT status FROM webhook_events WHERE id = ANY($1::uuid[])", [uuid.UUID(e) for e in slow]
    )
    assert sorted(s["status"] for s in statuses) == [
        "delivered",
        "received",
        "received",
        "received",
    ]


async def test_an_open_circuit_stops_calls_without_spending_attempts(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    policy = {
        "circuit_failures": 2,
        "circuit_cooldown_seconds": 60,
        "max_attempts": 10,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.1,
    }
    await destination(client, crm, policy=policy)
    await route(client)
    crm.script(*[Reply(status=503)] * 10)
    event_id = await send_stripe(client, stripe_event("customer.updated"))
    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT last_error FROM webhook_deliveries",
            until=lambda e: e is not None and "circuit" in e,
            within=15,
        )
    # Two failures opened it; nothing more was sent, and no attempt was spent while it is.
    assert len(crm.requests) == 2
    row = await db.fetchrow("SELECT attempt_count, status FROM webhook_deliveries")
    assert row is not None
    assert (row["attempt_count"], row["status"]) == (2, "dispatched")
    assert await event_status(db, event_id, "received") == "received"


async def test_rotating_the_encryption_key_reseals_destination_secrets(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    crm: FakeHTTPServer,
) -> None:
    made = await destination(client, crm, signing=True, api_key={"value": "crm-key-0123456789"})
    await route(client)
    old = TEST_SECRETS["MIMIC_ENCRYPTION_KEYS"]
    new = "k2:" + base64.b64encode(b"n" * 32).decode()
    url = settings.database.url.get() if settings.database.url else None
    both = make_settings(
        url, INKPASS_INTERNAL_URL=settings.inkpass.url, MIMIC_ENCRYPTION_KEYS=f"{new},{old}"
    )
    async with open_deps(both) as deps:
        assert await rotate_secrets(deps.db, deps.keyring) == 1
        assert await rotate_secrets(deps.db, deps.keyring) == 0  # nothing left to re-seal
    row = await db.fetchrow(
        "SELECT api_key_key_id, signing_secrets::text FROM gateway_destinations WHERE name = 'crm'"
    )
    assert row is not None
    assert row["api_key_key_id"] == "k2"
    assert {s["key_id"] for s in json.loads(row["signing_secrets"])} == {"k2"}
    # Only the new key now: deliveries still carry the same API key and signature.
    only_new = make_settings(
        url, INKPASS_INTERNAL_URL=settings.inkpass.url, MIMIC_ENCRYPTION_KEYS=new
    )
    event_id = await send_stripe(client, stripe_event("customer.updated"))
    async with running_worker(only_new):
        assert await event_status(db, event_id, "delivered") == "delivered"
    [request] = crm.requests
    verify(made["signing_secret"], request)
    assert request.headers["x-api-key"] == "crm-key-0123456789"
