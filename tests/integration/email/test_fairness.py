"""No send holds a worker slot for long: the SMTP deadline, the send-rate turn that goes back
to the queue, and a tenant's share of the email slots. (The hostile tenant end to end, with
real processes: tests/acceptance/test_hostile_tenant.py.)"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core import ratelimit
from mimic.core.db import Database, create_pool
from mimic.core.slots import KeyedSlots
from mimic.email.providers import OutgoingEmail, RetryableSendError, SmtpConfig
from mimic.email.providers.smtp import send_smtp
from tests.fakes import FakeHTTPServer, SmtpSink, Tarpit, resend_responder
from tests.helpers import ADMIN, client_for, make_settings, running_worker, wait_for_value

MESSAGE = OutgoingEmail(
    notification_id="00000000-0000-4000-8000-000000000001",
    sender="a@example.com",
    to=["b@example.com"],
    subject="s",
    html="<p>h</p>",
    text="t",
)


async def test_an_smtp_tarpit_holds_a_send_for_one_deadline_not_a_timeout_per_read() -> None:
    async with Tarpit(every=0.2) as pit:
        config = SmtpConfig(host="127.0.0.1", port=pit.port, security="none")
        started = time.monotonic()
        with pytest.raises(RetryableSendError) as failed:
            # Each read gets a byte well within the 5 s step timeout: only the deadline ends it.
            await send_smtp(config, MESSAGE, timeout=5, deadline=1)
        elapsed = time.monotonic() - started
    assert "1 s deadline" in failed.value.reason
    assert failed.value.certain  # the greeting never finished: nothing was handed over
    assert 0.9 < elapsed < 4, elapsed


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(await create_pool(database_url, max_size=2))
    yield db
    await db.close()


async def test_a_turn_further_than_a_second_is_returned_not_slept(database: Database) -> None:
    assert await ratelimit.wait_turn(database, "smtp:tenant:a", 0.1) == 0  # the first is now
    started = time.monotonic()
    delay = await ratelimit.wait_turn(database, "smtp:tenant:a", 0.1)
    assert time.monotonic() - started < 0.5  # not slept
    assert 9 < delay <= 10  # and the turn is kept: the next one is a turn later
    assert 19 < await ratelimit.wait_turn(database, "smtp:tenant:a", 0.1) <= 20


def test_a_key_holds_at_most_its_share_of_the_slots() -> None:
    slots = KeyedSlots(2)
    assert slots.try_take("a")
    assert slots.try_take("a")
    assert not slots.try_take("a")
    assert slots.try_take("b")  # another key is not affected
    slots.give_back("a")
    assert slots.try_take("a")
    assert slots.held("a") == 2


async def test_a_send_waiting_for_its_turn_spends_no_attempt_and_takes_no_second_turn(
    database_url: str, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    settings = make_settings(
        database_url,
        EMAIL_PROVIDER="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        SMTP_SECURITY="none",
        SMTP_RATE_PER_SECOND="0.5",  # one send every 2 s
    )
    client: AsyncTestClient[Litestar]
    async with client_for(create_app(settings)) as client:
        for n in range(2):
            body = {
                "to": f"u{n}@example.com",
                "template": "welcome",
                "data": {"name": "U", "login_url": "https://example.com/l"},
            }
            response = await client.post("/api/v1/notifications/email", json=body, headers=ADMIN)
            assert response.status_code == 202
        async with running_worker(settings):
            await wait_for_value(
                db,
                "SELECT count(*) FROM notifications WHERE status = 'sent'",
                until=lambda n: n == 2,
                within=15,
            )
    waited = await db.fetch(
        "SELECT n.attempts, e.detail FROM notifications n "
        "JOIN notification_events e ON e.notification_id = n.id WHERE e.status = 'waiting'"
    )
    assert len(waited) == 1  # the second send went back to the queue for its turn, once
    assert waited[0]["attempts"] == 1  # and was sent on its first counted attempt
    assert "send-rate turn at" in waited[0]["detail"]
    turn_jobs = await db.fetch(
        "SELECT args FROM procrastinate_jobs WHERE args ? 'turn' AND status = 'succeeded'"
    )
    # The platform's sends book turns in a bucket of their own (admin sends: tenant '-').
    assert [json.loads(r["args"])["turn"] for r in turn_jobs] == ["smtp:platform:tenant:-"]
    # Two sends took two tokens (one each): the bucket is two turns down, not three.
    tokens = await db.fetchval(
        "SELECT tokens + 0.5 * extract(epoch FROM clock_timestamp() - updated_at) "
        "FROM send_rate_buckets WHERE key = 'smtp:platform:tenant:-'"
    )
    assert tokens > -0.5, tokens
    assert len(smtp.messages) == 2


async def test_refusals_of_one_tenants_mail_do_not_open_the_shared_platform_circuit(
    database_url: str, db: asyncpg.Connection
) -> None:
    # The platform's relay answers 451 at DATA for one tenant's recipient (content or
    # recipient trouble: about that message, not the relay).
    with SmtpSink(later={"blocked@example.com": 1000}) as relay:
        settings = make_settings(
            database_url,
            EMAIL_PROVIDER="smtp",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(relay.port),
            SMTP_SECURITY="none",
            EMAIL_CIRCUIT_FAILURES="2",
            EMAIL_BACKOFF_BASE_SECONDS="0.05",
            EMAIL_BACKOFF_MAX_SECONDS="0.2",
        )
        body = {"template": "welcome", "data": {"name": "U", "login_url": "https://e.x/l"}}
        async with client_for(create_app(settings)) as client:
            for _ in range(3):
                sent = await client.post(
                    "/api/v1/notifications/email",
                    json={**body, "to": "blocked@example.com", "tenant_id": "noisy"},
                    headers=ADMIN,
                )
                assert sent.status_code == 202
            async with running_worker(settings):
                await wait_for_value(  # each refused at least twice: the breaker's threshold
                    db,
                    "SELECT min(attempts) FROM notifications WHERE tenant_id = 'noisy'",
                    until=lambda n: n >= 2,
                    within=15,
                )
                other = await client.post(
                    "/api/v1/notifications/email",
                    json={**body, "to": "reset@example.com", "tenant_id": "quiet"},
                    headers=ADMIN,
                )
                await wait_for_value(
                    db,
                    "SELECT status FROM notifications WHERE id = $1",
                    uuid.UUID(other.json()["id"]),
                    until=lambda s: s == "sent",
                    within=15,
                )
    skipped = await db.fetchval("SELECT count(*) FROM notification_events WHERE status = 'skipped'")
    assert skipped == 0  # no send was skipped for an open circuit
    assert not await db.fetchval(
        "SELECT coalesce(bool_or(open_until > now()), false) FROM provider_circuits"
    )


async def test_one_tenants_batch_does_not_push_anothers_send_behind_it(
    database_url: str, db: asyncpg.Connection
) -> None:
    rate = 2.0  # the platform's Resend: one send every 0.5 s, shared by every tenant
    with FakeHTTPServer(resend_responder()) as resend:
        settings = make_settings(
            database_url,
            EMAIL_PROVIDER="resend",
            RESEND_API_KEY="re_platform_12345678",
            RESEND_API_URL=resend.url,
            RESEND_RATE_PER_SECOND=str(rate),
        )
        body = {"template": "welcome", "data": {"name": "U", "login_url": "https://e.x/l"}}
        async with client_for(create_app(settings)) as client:
            batch = {
                "messages": [
                    {**body, "to": f"u{i}@example.com", "tenant_id": "bulk"} for i in range(24)
                ]
            }
            response = await client.post(
                "/api/v1/notifications/email/batch", json=batch, headers=ADMIN
            )
            assert response.status_code == 202, response.text
            async with running_worker(settings):
                # The batch has booked its turns (it would take 12 s alone) ...
                await wait_for_value(
                    db,
                    "SELECT count(*) FROM notifications WHERE status = 'sent'",
                    until=lambda n: n >= 2,
                    within=15,
                )
                reset = await client.post(
                    "/api/v1/notifications/email",
                    json={**body, "to": "reset@example.com", "tenant_id": "quiet"},
                    headers=ADMIN,
                )
                asked = time.monotonic()
                # ... and another tenant's send still goes within a few turns.
                await wait_for_value(
                    db,
                    "SELECT status FROM notifications WHERE id = $1",
                    uuid.UUID(reset.json()["id"]),
                    until=lambda s: s == "sent",
                    within=15,
                )
                waited = time.monotonic() - asked
                bulk_left = await db.fetchval(
                    "SELECT count(*) FROM notifications WHERE tenant_id = 'bulk' "
                    "AND status <> 'sent'"
                )
    assert waited < 5, waited  # a few turns, not the 10 s the batch had booked ahead of it
    assert bulk_left >= 10, bulk_left  # the batch was still far from done
