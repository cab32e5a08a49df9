"""Provider failover, the shared circuit breaker, and send rates shared by every worker.

Failover happens only when the first provider certainly did not send; an unknown outcome is
retried with the same provider. Everything runs through HTTP, real workers and fake
providers (real local HTTP servers)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, Received, Reply, postmark_responder, resend_responder
from tests.helpers import ADMIN, client_for, make_settings, running_worker, wait_for_value
from tests.procs import free_port

SEND = "/api/v1/notifications/email"
WELCOME = {"template": "welcome", "data": {"name": "A", "login_url": "https://example.com"}}


@pytest.fixture
def postmark() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(postmark_responder()) as server:
        yield server


def failover_settings(
    database_url: str, resend_url: str, postmark_url: str, **extra: str
) -> Settings:
    return make_settings(
        database_url,
        EMAIL_PROVIDERS="resend,postmark",
        RESEND_API_KEY="re_platform_12345678",
        RESEND_API_URL=resend_url,
        POSTMARK_SERVER_TOKEN="pm-platform-token",
        POSTMARK_API_URL=postmark_url,
        EMAIL_BACKOFF_BASE_SECONDS="0.05",
        EMAIL_BACKOFF_MAX_SECONDS="0.2",
        PROVIDER_TIMEOUT_SECONDS="0.5",
        POSTMARK_RECHECK_SECONDS="0.2",
        **extra,
    )


async def send(client: AsyncTestClient[Litestar], to: str = "ann@example.com") -> uuid.UUID:
    response = await client.post(SEND, json={"to": to, **WELCOME}, headers=ADMIN)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


async def timeline(db: asyncpg.Connection, nid: uuid.UUID) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT status, coalesce(detail, '') AS detail FROM notification_events"
        " WHERE notification_id = $1 ORDER BY id",
        nid,
    )
    return [(r["status"], r["detail"]) for r in rows]


async def test_a_resend_that_refuses_connections_fails_over_to_postmark_once(
    database_url: str, db: asyncpg.Connection, postmark: FakeHTTPServer
) -> None:
    settings = failover_settings(database_url, f"http://127.0.0.1:{free_port()}", postmark.url)
    async with client_for(create_app(settings)) as client, running_worker(settings):
        nid = await send(client)
        await wait_for_value(
            db, "SELECT status FROM notifications WHERE id = $1", nid, until=lambda v: v == "sent"
        )
    posts = [r for r in postmark.requests if r.method == "POST"]
    assert len(posts) == 1  # exactly one message sent
    row = await db.fetchrow("SELECT provider, attempts, provider_message_id FROM notifications")
    assert row is not None
    assert (row["provider"], row["attempts"]) == ("postmark", 1)
    steps = await timeline(db, nid)
    assert [s for s, _ in steps] == ["queued", "sending", "provider_failed", "sent"]
    assert steps[1][1] == "attempt 1 via resend"
    assert steps[2][1].startswith("resend: could not connect")
    assert steps[2][1].endswith("trying the next provider")
    assert steps[3][1].startswith("postmark message ")


async def test_an_unknown_outcome_is_retried_with_the_same_provider_never_another(
    database_url: str, db: asyncpg.Connection, postmark: FakeHTTPServer
) -> None:
    with FakeHTTPServer(resend_responder()) as resend:
        resend.script(Reply(respond=True, delay=1.0))  # takes it, answers after our timeout
        settings = failover_settings(database_url, resend.url, postmark.url)
        async with client_for(create_app(settings)) as client, running_worker(settings):
            nid = await send(client)
            await wait_for_value(
                db,
                "SELECT status FROM notifications WHERE id = $1",
                nid,
                until=lambda v: v == "sent",
            )
        keys = [r.headers["idempotency-key"] for r in resend.requests]
    assert keys == [str(nid), str(nid)]  # asked again, with the same idempotency key
    assert postmark.requests == []  # never another provider
    assert await db.fetchval("SELECT provider FROM notifications") == "resend"
    assert "provider_failed" not in [s for s, _ in await timeline(db, nid)]


async def test_once_pinned_a_later_certain_failure_does_not_unpin(
    database_url: str, db: asyncpg.Connection, postmark: FakeHTTPServer
) -> None:
    """Resend may have taken the first attempt (timeout); its 503 on the retry does not change
    that, so the next retry asks Resend again, not Postmark."""
    with FakeHTTPServer(resend_responder()) as resend:
        busy = Reply(status=503, body={"name": "internal_server_error", "message": "busy"})
        resend.script(Reply(respond=True, delay=1.0), busy, busy)
        settings = failover_settings(database_url, resend.url, postmark.url)
        async with client_for(create_app(settings)) as client, running_worker(settings):
            nid = await send(client)
            await wait_for_value(
                db,
                "SELECT status FROM notifications WHERE id = $1",
                nid,
                until=lambda v: v == "sent",
            )
    assert postmark.requests == []
    row = await db.fetchrow("SELECT provider, attempts, provider_pinned FROM notifications")
    assert row is not None
    assert (row["provider"], row["attempts"], row["provider_pinned"]) == ("resend", 4, False)


async def test_the_circuit_opens_after_repeated_certain_failures_and_is_shared(
    database_url: str, db: asyncpg.Connection, postmark: FakeHTTPServer
) -> None:
    settings = failover_settings(
        database_url,
        f"http://127.0.0.1:{free_port()}",
        postmark.url,
        EMAIL_CIRCUIT_FAILURES="2",
        EMAIL_CIRCUIT_COOLDOWN_SECONDS="60",
    )
    async with client_for(create_app(settings)) as client:
        async with running_worker(settings):
            for i in range(2):
                nid = await send(client, f"u{i}@example.com")
                await wait_for_value(
                    db,
                    "SELECT status FROM notifications WHERE id = $1",
                    nid,
                    until=lambda v: v == "sent",
                )
        assert await db.fetchval(
            "SELECT open_until > now() FROM provider_circuits WHERE key = 'resend:platform'"
        )
        # Another worker (a new process would do the same) reads the open circuit from
        # Postgres: it skips Resend without trying it.
        async with running_worker(settings):
            third = await send(client, "u2@example.com")
            await wait_for_value(
                db,
                "SELECT status FROM notifications WHERE id = $1",
                third,
                until=lambda v: v == "sent",
            )
        metrics = (await client.get("/metrics")).text
    steps = await timeline(db, third)
    assert [s for s, _ in steps] == ["queued", "sending", "skipped", "sent"]
    assert steps[2][1].startswith("resend: circuit open until")
    assert 'mimic_email_provider_skipped_total{provider="resend",reason="circuit_open"}' in metrics
    assert len([r for r in postmark.requests if r.method == "POST"]) == 3


def limited_resend(per_second: int) -> tuple[Any, list[float], list[int]]:
    """A Resend that allows ``per_second`` requests per second (a token bucket of that size,
    refilled at that rate) and answers 429 beyond it."""
    inner = resend_responder()
    bucket = {"tokens": float(per_second), "at": time.monotonic()}
    lock = threading.Lock()
    accepted: list[float] = []
    refused: list[int] = []

    def respond(request: Received) -> Reply:
        with lock:
            elapsed = request.at - bucket["at"]
            bucket["tokens"] = min(per_second, bucket["tokens"] + elapsed * per_second)
            bucket["at"] = request.at
            if bucket["tokens"] < 1:
                refused.append(1)
                return Reply(
                    status=429,
                    body={"name": "rate_limit_exceeded", "message": "Too many requests"},
                    headers={"ratelimit-reset": "1"},
                )
            bucket["tokens"] -= 1
            accepted.append(request.at)
        return inner(request)

    return respond, accepted, refused


async def test_the_send_rate_is_kept_across_workers_with_no_429(
    database_url: str, db: asyncpg.Connection
) -> None:
    rate, total = 5, 20
    respond, accepted, refused = limited_resend(rate)
    with FakeHTTPServer(respond) as resend:
        settings = make_settings(
            database_url,
            EMAIL_PROVIDER="resend",
            RESEND_API_KEY="re_platform_12345678",
            RESEND_API_URL=resend.url,
            RESEND_RATE_PER_SECOND=str(rate),
        )
        async with client_for(create_app(settings)) as client:
            body = {"messages": [{"to": f"u{i}@example.com", **WELCOME} for i in range(total)]}
            assert (await client.post(f"{SEND}/batch", json=body, headers=ADMIN)).status_code == 202
            started = time.monotonic()
            async with running_worker(settings), running_worker(settings):
                await wait_for_value(
                    db,
                    "SELECT count(*) FROM notifications WHERE status = 'sent'",
                    until=lambda v: v == total,
                    within=30,
                )
            elapsed = time.monotonic() - started
    assert refused == []  # zero 429s
    assert len(accepted) == total  # all sent, each once
    # Paced evenly at `rate` per second: (total - 1) / rate seconds from first to last.
    spread = accepted[-1] - accepted[0]
    assert spread >= (total - 1) / rate * 0.9, spread
    assert elapsed < (total - 1) / rate + 10, elapsed  # and not much slower


async def test_a_send_reclaimed_mid_call_is_pinned_and_a_final_failure_keeps_the_pin(
    database_url: str, db: asyncpg.Connection, postmark: FakeHTTPServer
) -> None:
    """A worker that died mid-call leaves the row `sending`: the call may have been sent, so
    the next claim may ask that provider alone."""
    from mimic.core.deps import open_deps
    from mimic.email import status

    settings = failover_settings(database_url, f"http://127.0.0.1:{free_port()}", postmark.url)
    async with client_for(create_app(settings)) as client:
        nid = await send(client)
    owner = await db.fetchval("SELECT job_id FROM notifications WHERE id = $1", nid)
    async with open_deps(settings) as deps:
        # Only the job that owns the send may claim it.
        assert await status.claim(deps.db, nid, owner + 1) is None
        first = await status.claim(deps.db, nid, owner)  # attempt 1 starts... and dies
        again = await status.claim(deps.db, nid, owner)
        assert first is not None
        assert again is not None
        assert (first.provider_pinned, again.provider_pinned) == (False, True)
        assert again.provider == "resend"
        await status.mark_unsent(deps.db, nid, retrying=False, reason="gave up")
    assert await db.fetchval("SELECT provider_pinned FROM notifications") is True
