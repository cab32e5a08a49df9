"""POST /api/v1/gateway/webhooks/stripe against real Postgres (invariants 1, 2, 4, 5, 8)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.helpers import (
    TEST_SECRETS,
    client_for,
    live_api,
    make_settings,
    stripe_event,
    stripe_headers,
    table_counts,
)

URL = "/api/v1/gateway/webhooks/stripe"


async def fetch_event(database_url: str, event_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(
            "SELECT *, payload::text AS payload_text FROM webhook_events WHERE event_id = $1",
            event_id,
        )
    finally:
        await conn.close()


async def test_valid_event_is_stored_with_its_delivery_and_job(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    body = stripe_event("customer.subscription.created", id="evt_valid_1")
    headers = stripe_headers(body)
    response = await client.post(URL, content=body, headers=headers)

    assert response.status_code == 200
    assert response.json()["duplicate"] is False
    our_id = uuid.UUID(response.json()["event_id"])

    row = await fetch_event(database_url, "evt_valid_1")
    assert row is not None
    assert row["id"] == our_id
    assert row["provider"] == "stripe"
    assert row["event_type"] == "customer.subscription.created"
    assert row["status"] == "received"
    assert bytes(row["raw_body"]) == body  # byte for byte
    assert row["signature"] == headers["Stripe-Signature"]
    assert json.loads(row["payload_text"]) == json.loads(body)

    conn = await asyncpg.connect(database_url)
    try:
        deliveries = await conn.fetch(
            "SELECT * FROM webhook_deliveries WHERE event_id = $1", our_id
        )
        assert len(deliveries) == 1
        delivery = deliveries[0]
        assert delivery["target_service"] == "inkpass"
        assert delivery["task_name"] == "mimic.tasks.route_to_inkpass_subscription_created"
        assert delivery["status"] == "pending"
        job = await conn.fetchrow(
            "SELECT * FROM procrastinate_jobs WHERE id = $1", delivery["job_id"]
        )
        assert job is not None
        assert job["task_name"] == delivery["task_name"]
        assert job["queue_name"] == "webhooks"
        assert json.loads(job["args"]) == {"delivery_id": str(delivery["id"])}
    finally:
        await conn.close()


async def test_raw_body_is_kept_byte_for_byte_even_when_not_canonical_json(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    body = b'{ "type" : "invoice.paid",\n  "id":"evt_spacing", "data":{"object":{}},"x":1.50 }'
    response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    row = await fetch_event(database_url, "evt_spacing")
    assert row is not None
    assert bytes(row["raw_body"]) == body


async def test_unrouted_event_is_stored_as_ignored_without_jobs(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    body = stripe_event("customer.created", id="evt_ignored")
    response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    row = await fetch_event(database_url, "evt_ignored")
    assert row is not None
    assert row["status"] == "ignored"
    assert row["processed_at"] is not None
    counts = await table_counts(database_url)
    assert counts == {"webhook_events": 1, "webhook_deliveries": 0, "procrastinate_jobs": 0}


async def test_duplicate_answers_200_and_creates_nothing(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    body = stripe_event("invoice.paid", id="evt_dup")
    first = await client.post(URL, content=body, headers=stripe_headers(body))
    before = await table_counts(database_url)
    second = await client.post(URL, content=body, headers=stripe_headers(body))
    assert second.status_code == 200
    assert second.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    assert await table_counts(database_url) == before


async def test_fifty_identical_requests_at_once_make_one_event_delivery_and_job(
    settings: Settings, database_url: str
) -> None:
    body = stripe_event("customer.subscription.updated", id="evt_storm")
    headers = stripe_headers(body)
    async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
        responses = await asyncio.gather(
            *(http.post(URL, content=body, headers=headers) for _ in range(50))
        )
    assert {r.status_code for r in responses} == {200}
    flags = [r.json()["duplicate"] for r in responses]
    assert flags.count(False) == 1
    assert flags.count(True) == 49
    assert len({r.json()["event_id"] for r in responses}) == 1
    counts = await table_counts(database_url)
    assert counts == {"webhook_events": 1, "webhook_deliveries": 1, "procrastinate_jobs": 1}


def rejected(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "mimic_webhooks_rejected_total", {"provider": "stripe", "reason": reason}
    )
    return value or 0.0


GOOD = stripe_event("invoice.paid", id="evt_bad_input")
NUL = b'{"id": "evt_nul", "type": "x", "note": "\\u0000"}'
ESCAPED = b'{"id": "evt_escaped", "type": "x", "note": "C:\\\\u0000 is a path"}'


def signed(body: bytes, **kwargs: Any) -> Callable[[], dict[str, str]]:
    """Sign at test time, not at collection time, so the timestamp is fresh."""
    return lambda: stripe_headers(body, **kwargs)


def raw(value: str) -> Callable[[], dict[str, str]]:
    return lambda: {"Stripe-Signature": value} if value else {}


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (GOOD, raw(""), "missing_signature"),
        (GOOD, raw("nonsense"), "malformed_signature"),
        (GOOD, raw("t=1790000000,v1=zz"), "malformed_signature"),
        (GOOD, signed(GOOD, secret="whsec_wrong"), "signature_mismatch"),
        (GOOD, signed(GOOD.replace(b"invoice.paid", b"invoice.pain")), "signature_mismatch"),
        (GOOD, signed(GOOD, timestamp=int(time.time()) - 301), "timestamp_out_of_tolerance"),
        (GOOD, signed(GOOD, timestamp=int(time.time()) + 3600), "timestamp_out_of_tolerance"),
        (b"{not json", signed(b"{not json"), "invalid_json"),
        (b'{"type": "invoice.paid"}', signed(b'{"type": "invoice.paid"}'), "invalid_event"),
        (b"[1, 2]", signed(b"[1, 2]"), "invalid_event"),
        (NUL, signed(NUL), "invalid_json"),
    ],
)
async def test_bad_input_is_400_named_logged_counted_and_not_stored(
    client: AsyncTestClient[Litestar],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    before = rejected(reason)
    with caplog.at_level(logging.WARNING, logger="mimic"):
        response = await client.post(URL, content=body, headers=headers())
    assert response.status_code == 400
    assert response.json()["error"] == reason
    assert await table_counts(database_url) == {
        "webhook_events": 0,
        "webhook_deliveries": 0,
        "procrastinate_jobs": 0,
    }
    assert rejected(reason) == before + 1
    assert any(reason in record.getMessage() for record in caplog.records)
    secret = TEST_SECRETS["STRIPE_WEBHOOK_SECRET"]
    assert secret not in caplog.text
    assert secret not in response.text


async def test_escaped_backslash_u0000_is_ordinary_text(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    response = await client.post(URL, content=ESCAPED, headers=stripe_headers(ESCAPED))
    assert response.status_code == 200
    row = await fetch_event(database_url, "evt_escaped")
    assert row is not None
    assert json.loads(row["payload_text"])["note"] == "C:\\u0000 is a path"


async def test_body_over_the_limit_is_413_logged_counted_and_not_stored(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, WEBHOOK_MAX_BODY_BYTES="1024")
    body = stripe_event("invoice.paid", id="evt_big", padding="x" * 2000)
    before = rejected("payload_too_large")
    async with client_for(create_app(settings)) as client:
        with caplog.at_level(logging.WARNING, logger="mimic"):
            response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert (await table_counts(database_url))["webhook_events"] == 0
    assert rejected("payload_too_large") == before + 1
    assert "payload_too_large" in caplog.text


async def test_a_streamed_body_over_the_limit_is_413_without_a_length(database_url: str) -> None:
    """Chunked, no Content-Length: the limit is enforced while reading, through real uvicorn."""
    settings = make_settings(database_url, WEBHOOK_MAX_BODY_BYTES="1024")
    body = stripe_event("invoice.paid", id="evt_chunked", padding="x" * 4000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post(URL, content=chunks(), headers=stripe_headers(body))
        small = stripe_event("invoice.paid", id="evt_chunked_small")

        async def small_chunks() -> AsyncIterator[bytes]:
            yield small[:100]
            yield small[100:]

        fine = await http.post(URL, content=small_chunks(), headers=stripe_headers(small))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert fine.status_code == 200, fine.text  # chunks under the limit are joined and stored
    assert (await table_counts(database_url))["webhook_events"] == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_webhook_route_answers_other_methods_405(
    client: AsyncTestClient[Litestar], database_url: str, method: str
) -> None:
    body = stripe_event("invoice.paid")
    response = await client.request(method, URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"
    assert response.headers["x-request-id"]
    assert (await table_counts(database_url))["webhook_events"] == 0


async def test_body_at_the_limit_is_accepted(database_url: str) -> None:
    base = stripe_event("invoice.paid", id="evt_edge", padding="")
    settings = make_settings(database_url, WEBHOOK_MAX_BODY_BYTES=str(len(base) + 10))
    body = stripe_event("invoice.paid", id="evt_edge", padding="x" * 10)
    assert len(body) == len(base) + 10
    async with client_for(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 200


@pytest.mark.parametrize("wrong", ["port", "database"])
async def test_database_down_is_503_never_200(server_url: str, wrong: str) -> None:
    from tests.helpers import with_database

    url = (
        "postgresql://postgres@127.0.0.1:1/none"
        if wrong == "port"
        else with_database(server_url, "no_such_database")
    )
    settings = make_settings(url)
    body = stripe_event("invoice.paid")
    async with client_for(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"


async def test_2xx_only_after_commit(client: AsyncTestClient[Litestar], database_url: str) -> None:
    # A deferred constraint trigger fails at COMMIT, after every INSERT succeeded:
    # the handler must not have answered 200 before that.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'commit refused'; END $$;
            CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON webhook_deliveries
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
            """
        )
    finally:
        await conn.close()
    body = stripe_event("invoice.paid", id="evt_commit_fails")
    response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code >= 500
    assert "commit refused" not in response.text
    assert await table_counts(database_url) == {
        "webhook_events": 0,
        "webhook_deliveries": 0,
        "procrastinate_jobs": 0,
    }


async def test_unconfigured_secret_is_503(database_url: str) -> None:
    settings = make_settings(database_url, STRIPE_WEBHOOK_SECRET="")
    body = stripe_event("invoice.paid")
    async with client_for(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"


async def test_dev_test_endpoint_generates_an_id_and_uses_the_pipeline(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    seed_example = {
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "customer": "cus_123",
                "customer_email": "user@example.com",
                "subscription": "sub_123",
                "metadata": {"product_type": "pro"},
            }
        },
    }
    response = await client.post(f"{URL}/test", json=seed_example)
    assert response.status_code == 200
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT event_id, signature, payload FROM webhook_events")
        assert row is not None
        assert row["event_id"].startswith("evt_test_")
        assert row["signature"] is None
        assert json.loads(row["payload"])["id"] == row["event_id"]
        assert await conn.fetchval("SELECT count(*) FROM procrastinate_jobs") == 1
    finally:
        await conn.close()
    again = await client.post(f"{URL}/test", json={**seed_example, "id": row["event_id"]})
    assert again.json()["duplicate"] is True


async def test_dev_test_endpoint_rejects_bad_input(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(f"{URL}/test", content=b"{}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_event"


async def test_dev_test_endpoint_is_404_in_production(database_url: str) -> None:
    settings = make_settings(database_url, MIMIC_ENV="production", EMAIL_PROVIDER="resend")
    async with client_for(create_app(settings)) as client:
        response = await client.post(f"{URL}/test", json={"type": "invoice.paid"})
        schema = (await client.get("/docs/openapi.json")).json()
    assert response.status_code == 404
    assert f"{URL}/test" not in schema["paths"]
    assert (await table_counts(database_url))["webhook_events"] == 0
