"""send_email through real local Resend/Postmark HTTP servers and a real SMTP server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, Reply, SmtpSink, postmark_responder, resend_responder
from tests.helpers import (
    TEST_SECRETS,
    client_for,
    make_settings,
    running_worker,
    wait_for,
    wait_for_value,
)

AUTH = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}
RESEND_KEY = "re_platform_key_0123456789"
POSTMARK_TOKEN = "pm-platform-token-0123456789"


@pytest.fixture
def resend() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(resend_responder()) as server:
        yield server


@pytest.fixture
def postmark() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(postmark_responder()) as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink(refuse={"gone@example.com"}) as sink:
        yield sink


@pytest.fixture
def settings(
    database_url: str, resend: FakeHTTPServer, postmark: FakeHTTPServer, smtp: SmtpSink
) -> Settings:
    return make_settings(
        database_url,
        EMAIL_PROVIDER="resend",
        RESEND_API_KEY=RESEND_KEY,
        RESEND_API_URL=resend.url,
        POSTMARK_SERVER_TOKEN=POSTMARK_TOKEN,
        POSTMARK_API_URL=postmark.url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        SMTP_SECURITY="none",
        EMAIL_MAX_ATTEMPTS="3",
        PROVIDER_TIMEOUT_SECONDS="0.5",
        POSTMARK_RECHECK_SECONDS="1",
        DELIVERY_BACKOFF_MAX_SECONDS="5",
    )


async def queue(client: AsyncTestClient[Litestar], **extra: Any) -> str:
    body = {
        "to": "ann@example.com",
        "template": "password_reset",
        "data": {"name": "Ann", "reset_url": "https://x.example/r", "expires_in_minutes": 30},
        **extra,
    }
    response = await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def settled(db: asyncpg.Connection, notification_id: str) -> asyncpg.Record:
    await wait_for_value(
        db,
        "SELECT status FROM notifications WHERE id = $1",
        uuid.UUID(notification_id),
        until=lambda v: v in ("sent", "failed"),
        within=15,
    )
    row = await db.fetchrow("SELECT * FROM notifications WHERE id = $1", uuid.UUID(notification_id))
    assert row is not None
    return row


async def test_resend_gets_the_key_per_request_and_our_idempotency_key(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    nid = await queue(client, cc=["cc@example.com"], tags={"flow": "reset"})
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "sent"
    [call] = resend.requests
    assert call.path == "/emails"
    assert call.headers["authorization"] == f"Bearer {RESEND_KEY}"
    assert call.headers["idempotency-key"] == nid
    body = call.json()
    assert body["to"] == ["ann@example.com"]
    assert body["cc"] == ["cc@example.com"]
    assert body["subject"] == "Reset your password"
    assert "https://x.example/r" in body["html"]
    assert "30 minutes" in body["text"]
    assert body["tags"] == [{"name": "flow", "value": "reset"}]
    assert row["provider_message_id"].startswith("re_")


@pytest.mark.parametrize(
    "first",
    [
        Reply(status=500, body={"name": "internal_server_error", "message": "boom"}),
        Reply(status=429, body={"name": "rate_limit_exceeded", "message": "slow down"}),
        Reply(status=409, body={"name": "concurrent_idempotent_requests", "message": "busy"}),
        Reply(drop=True),
        Reply(delay=1.0),
    ],
    ids=["500", "429", "409-concurrent", "dropped", "timeout"],
)
async def test_resend_transient_errors_are_retried_with_the_same_key(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
    first: Reply,
) -> None:
    resend.script(first)
    nid = await queue(client)
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "sent"
    assert row["attempts"] == 2
    assert [r.headers["idempotency-key"] for r in resend.requests] == [nid, nid]
    timeline = await db.fetch(
        "SELECT status FROM notification_events WHERE notification_id = $1 ORDER BY id",
        uuid.UUID(nid),
    )
    # A 429 (or 503) certainly was not sent: the provider's failure is on the timeline (and
    # would let the next provider of the order try). The others, a 500 included, may have
    # been sent: retry the same provider only.
    certain = first.status == 429
    assert [t["status"] for t in timeline] == [
        "queued",
        "sending",
        *(["provider_failed"] if certain else []),
        "retrying",
        "sending",
        "sent",
    ]
    pinned = await db.fetchval("SELECT provider_pinned FROM notifications")
    assert pinned is False  # reset once sent


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            Reply(status=403, body={"name": "invalid_api_key", "message": "API key is invalid"}),
            "API key is invalid",
        ),
        (
            Reply(status=422, body={"name": "validation_error", "message": "Invalid `to` field"}),
            "Invalid `to` field",
        ),
        (
            Reply(
                status=409,
                body={"name": "invalid_idempotent_request", "message": "Same key, other payload"},
            ),
            "Same key",
        ),
    ],
)
async def test_resend_permanent_errors_fail_with_the_reason(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
    reply: Reply,
    reason: str,
) -> None:
    resend.script(reply)
    nid = await queue(client)
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "failed"
    assert reason in row["error"]
    assert len(resend.requests) == 1


async def test_resend_gives_up_after_email_max_attempts(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    resend.script(*[Reply(status=503, body={"message": "down"})] * 5)
    nid = await queue(client)
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "failed"
    assert row["attempts"] == 3
    assert len(resend.requests) == 3


async def test_postmark_send_and_inactive_recipient(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    postmark: FakeHTTPServer,
) -> None:
    ok = await queue(client, provider="postmark", bcc=["audit@example.com"])
    postmark_inactive = Reply(
        status=422,
        body={
            "ErrorCode": 406,
            "Message": "You tried to send to recipient(s) that have been marked as inactive.",
        },
    )
    async with running_worker(settings):
        sent = await settled(db, ok)
        postmark.script(postmark_inactive)
        bad = await queue(client, provider="postmark", to="inactive@example.com")
        failed = await settled(db, bad)
    assert sent["status"] == "sent"
    first = postmark.requests[0]
    assert first.headers["x-postmark-server-token"] == POSTMARK_TOKEN
    assert first.json()["To"] == "ann@example.com"
    assert first.json()["Bcc"] == "audit@example.com"
    assert first.json()["Metadata"]["mimic_notification_id"] == ok
    assert failed["status"] == "failed"
    assert "inactive" in failed["error"]
    assert "406" in failed["error"]


async def test_postmark_resumed_send_finds_the_earlier_message_instead_of_resending(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    postmark: FakeHTTPServer,
) -> None:
    nid = await queue(client, provider="postmark")
    async with running_worker(settings):
        first = await settled(db, nid)
    assert first["status"] == "sent"
    # Rewind to what a worker killed after Postmark accepted (but before we recorded it)
    # leaves behind, then run the job again.
    await db.execute(
        "UPDATE notifications SET status = 'sending', provider_message_id = NULL WHERE id = $1",
        uuid.UUID(nid),
    )
    await db.execute(
        "UPDATE procrastinate_jobs SET status = 'todo' WHERE task_name = 'mimic.tasks.send_email'"
    )
    async with running_worker(settings):

        async def resent() -> bool:
            return (
                await db.fetchval(
                    "SELECT provider_message_id FROM notifications WHERE id = $1", uuid.UUID(nid)
                )
                is not None
            )

        await wait_for(resent)
    posts = [r for r in postmark.requests if r.method == "POST"]
    searches = [r for r in postmark.requests if r.method == "GET"]
    assert len(posts) == 1  # not sent twice
    assert len(searches) == 1
    final = await settled(db, nid)
    assert final["provider_message_id"] == first["provider_message_id"]


async def test_smtp_provider_and_refused_recipient(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    async with running_worker(settings):
        ok = await settled(db, await queue(client, provider="smtp"))
        bad = await settled(db, await queue(client, provider="smtp", to="gone@example.com"))
    assert ok["status"] == "sent"
    assert len(smtp.messages) == 1
    assert smtp.messages[0]["Subject"] == "Reset your password"
    assert bad["status"] == "failed"
    assert "550" in bad["error"]


async def test_smtp_connections_to_the_platform_server_are_reused(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    async with running_worker(settings):
        for _ in range(3):
            assert (await settled(db, await queue(client, provider="smtp")))["status"] == "sent"
        # A refused recipient is an error on that connection: it is closed, never reused.
        assert (await settled(db, await queue(client, provider="smtp", to="gone@example.com")))[
            "status"
        ] == "failed"
        assert (await settled(db, await queue(client, provider="smtp")))["status"] == "sent"
    assert len(smtp.messages) == 4
    assert smtp.connections == 2  # one for the first three sends, a new one after the error


async def test_smtp_server_down_is_retried_then_failed(
    database_url: str, db: asyncpg.Connection
) -> None:
    from tests.procs import free_port

    settings = make_settings(
        database_url,
        EMAIL_PROVIDER="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(free_port()),
        SMTP_SECURITY="none",
        EMAIL_MAX_ATTEMPTS="2",
    )
    async with client_for(create_app(settings)) as client, running_worker(settings):
        row = await settled(db, await queue(client))
    assert row["status"] == "failed"
    assert row["attempts"] == 2
    assert "SMTP connection failed" in row["error"]


async def test_dev_without_a_local_smtp_server_says_what_to_run(
    database_url: str, db: asyncpg.Connection
) -> None:
    from tests.procs import free_port

    port = free_port()
    settings = make_settings(
        database_url,
        EMAIL_PROVIDER="dev",
        DEV_SMTP_HOST="127.0.0.1",
        DEV_SMTP_PORT=str(port),
        EMAIL_MAX_ATTEMPTS="1",
    )
    async with client_for(create_app(settings)) as client, running_worker(settings):
        row = await settled(db, await queue(client, provider="dev"))
    assert row["status"] == "failed"
    assert row["error"].startswith(
        f"dev: no SMTP server at 127.0.0.1:{port}; run `make mail` or Mailpit"
    )


async def test_postmark_timeout_then_retry_finds_the_first_send(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    postmark: FakeHTTPServer,
) -> None:
    # Postmark accepts the message but answers after our timeout: the retry must not
    # send it a second time.
    postmark.script(Reply(respond=True, delay=1.0))
    nid = await queue(client, provider="postmark")
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "sent"
    assert row["attempts"] == 2
    post, search = postmark.requests
    assert [post.method, search.method] == ["POST", "GET"]
    assert search.at - post.at >= 1.0  # POSTMARK_RECHECK_SECONDS
    timeline = await db.fetch(
        "SELECT detail FROM notification_events WHERE notification_id = $1 AND status = 'sent'",
        uuid.UUID(nid),
    )
    assert "not sent again" in timeline[0]["detail"]


async def test_unexpected_provider_reply_is_retried_not_left_sending(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    resend.script(Reply(status=200, body=b"<html>not json</html>"))
    nid = await queue(client)
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "sent"
    assert row["attempts"] == 2
    assert [r.headers["idempotency-key"] for r in resend.requests] == [nid, nid]


async def test_partly_refused_smtp_recipients_are_recorded(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    nid = await queue(client, provider="smtp", cc=["gone@example.com"])
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "sent"
    detail = await db.fetchval(
        "SELECT detail FROM notification_events WHERE notification_id = $1 AND status = 'sent'",
        uuid.UUID(nid),
    )
    assert "refused: gone@example.com (550)" in detail
    assert "mailbox unavailable" not in detail  # the server's words go to the log only
    assert smtp.envelopes[0][1] == ["ann@example.com"]


async def test_tenant_without_credential_uses_the_platform_key(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    nid = await queue(client, tenant_id="initech")
    async with running_worker(settings):
        row = await settled(db, nid)
    assert row["status"] == "sent"
    assert resend.requests[0].headers["authorization"] == f"Bearer {RESEND_KEY}"
