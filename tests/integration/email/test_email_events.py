"""Resend (Svix-signed) delivery webhooks move a notification's status and timeline."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from svix.webhooks import Webhook

from mimic.core.settings import Settings
from tests.helpers import (
    TEST_SECRETS,
    make_settings,
    running_worker,
    table_counts,
    wait_for,
    wait_for_value,
)

URL = "/api/v1/gateway/webhooks/resend"
SECRET = TEST_SECRETS["RESEND_WEBHOOK_SECRET"]


def signed(
    body: bytes, *, msg_id: str | None = None, at: float | None = None, secret: str = SECRET
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = datetime.datetime.fromtimestamp(at if at is not None else time.time(), datetime.UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
        "Content-Type": "application/json",
    }


def resend_event(event_type: str, email_id: str, **data: Any) -> bytes:
    return json.dumps(
        {
            "type": event_type,
            "created_at": "2026-11-26T10:00:00.000Z",
            "data": {"email_id": email_id, "to": ["ann@example.com"], **data},
        }
    ).encode()


async def sent_notification(db: asyncpg.Connection, email_id: str) -> uuid.UUID:
    nid = uuid.uuid4()
    await db.execute(
        """INSERT INTO notifications (id, template, "to", "from", subject, html, text, provider,
                                      provider_message_id, status, attempts, sent_at)
           VALUES ($1, 'welcome', '{ann@example.com}', 'x@example.com', 's', 'h', 't',
                   'resend', $2, 'sent', 1, now())""",
        nid,
        email_id,
    )
    return nid


async def status_and_timeline(db: asyncpg.Connection, nid: uuid.UUID) -> tuple[str, list[str]]:
    status = await db.fetchval("SELECT status FROM notifications WHERE id = $1", nid)
    rows = await db.fetch(
        "SELECT status FROM notification_events WHERE notification_id = $1 ORDER BY id", nid
    )
    return str(status), [r["status"] for r in rows]


async def test_delivered_then_bounced_moves_forward_never_back(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    nid = await sent_notification(db, "re_abc")
    for event_type, extra in [
        ("email.delivery_delayed", {}),
        ("email.delivered", {}),
        ("email.bounced", {"bounce": {"message": "mailbox full", "type": "Permanent"}}),
        ("email.delivered", {}),  # late and out of order: must not undo the bounce
    ]:
        body = resend_event(event_type, "re_abc", **extra)
        response = await client.post(URL, content=body, headers=signed(body))
        assert response.status_code == 200
        assert response.json()["duplicate"] is False

    async with running_worker(settings):

        async def all_applied() -> bool:
            return len((await status_and_timeline(db, nid))[1]) == 4

        await wait_for(all_applied)
    status, timeline = await status_and_timeline(db, nid)
    assert status == "bounced"
    assert sorted(timeline) == ["bounced", "delivered", "delivered", "delivery_delayed"]
    error = await db.fetchval("SELECT error FROM notifications WHERE id = $1", nid)
    assert "mailbox full" in error
    stored = await db.fetch("SELECT provider, status FROM webhook_events")
    assert {(r["provider"], r["status"]) for r in stored} == {("resend", "delivered")}


async def test_the_same_svix_message_twice_is_a_duplicate(
    client: AsyncTestClient[Litestar], database_url: str
) -> None:
    body = resend_event("email.delivered", "re_dup")
    headers = signed(body, msg_id="msg_fixed")
    first = await client.post(URL, content=body, headers=headers)
    second = await client.post(URL, content=body, headers=headers)
    assert first.json()["duplicate"] is False
    assert second.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    assert await table_counts(database_url) == {
        "webhook_events": 1,
        "webhook_deliveries": 1,
        "procrastinate_jobs": 1,
    }


async def test_non_email_events_are_stored_as_ignored(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    body = json.dumps({"type": "contact.created", "data": {"id": "c1"}}).encode()
    response = await client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 200
    assert await db.fetchval("SELECT status FROM webhook_events") == "ignored"


BODY = resend_event("email.delivered", "re_x")


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda: {}, "missing_signature"),
        (lambda: {**signed(BODY), "svix-signature": ""}, "missing_signature"),
        (lambda: {**signed(BODY), "svix-timestamp": "soon"}, "malformed_signature"),
        (lambda: signed(BODY, secret="whsec_b3RoZXJzZWNyZXQ="), "signature_mismatch"),
        # Signed when the test runs (not at import): the window is relative to now.
        (lambda: signed(BODY, at=time.time() - 400), "timestamp_out_of_tolerance"),
        (lambda: signed(BODY, at=time.time() + 400), "timestamp_out_of_tolerance"),
    ],
)
async def test_bad_signatures_are_400_and_nothing_is_stored(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    make_headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    headers = make_headers()
    with caplog.at_level(logging.WARNING, logger="mimic"):
        response = await client.post(URL, content=BODY, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == reason
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert SECRET not in caplog.text


async def test_tampered_body_is_a_mismatch(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    headers = signed(BODY)
    response = await client.post(URL, content=BODY.replace(b"re_x", b"re_y"), headers=headers)
    assert response.json()["error"] == "signature_mismatch"
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_event_for_an_email_we_did_not_send_is_ignored_after_its_window(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    # A short recheck window (1.5 x (0.2 + 3 x 0.1) = 0.75 s) so the test is quick.
    settings = make_settings(
        database_url, POSTMARK_RECHECK_SECONDS="0.2", PROVIDER_TIMEOUT_SECONDS="0.1"
    )
    body = resend_event("email.delivered", "re_not_ours")
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with running_worker(settings):

        async def settled() -> bool:
            status = await db.fetchval("SELECT status FROM webhook_events")
            return status in ("delivered", "failed")

        await wait_for(settled)
    delivery = await db.fetchrow("SELECT status, attempt_count, result FROM webhook_deliveries")
    assert delivery is not None
    assert delivery["status"] == "success"
    assert delivery["attempt_count"] >= 3
    assert "re_not_ours" in json.loads(delivery["result"])["ignored"]


async def test_an_event_waits_out_the_postmark_recheck_window(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    """A Delivery can arrive before a send with an unknown outcome records its id (that
    happens only after POSTMARK_RECHECK_SECONDS). The event keeps trying until then."""
    settings = make_settings(
        database_url,
        POSTMARK_RECHECK_SECONDS="2",
        PROVIDER_TIMEOUT_SECONDS="0.2",
        DELIVERY_BACKOFF_MAX_SECONDS="0.3",
        DELIVERY_MAX_ATTEMPTS="100",
    )
    body = resend_event("email.delivered", "re_late")
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with running_worker(settings):
        # The event keeps trying while the send's id is unknown (a window of 3.9 s here).
        await wait_for_value(
            db,
            "SELECT coalesce(max(attempt_count), 0) FROM webhook_deliveries",
            until=lambda tries: tries > 3,
        )
        nid = await sent_notification(db, "re_late")
        await wait_for_value(
            db,
            "SELECT status FROM notifications WHERE id = $1",
            nid,
            until=lambda v: v == "delivered",
        )
    delivery = await db.fetchrow("SELECT status, attempt_count FROM webhook_deliveries")
    assert delivery is not None
    assert delivery["status"] == "success"
    assert delivery["attempt_count"] > 3


async def test_send_then_provider_webhook_end_to_end(
    database_url: str, db: asyncpg.Connection
) -> None:
    from mimic.app import create_app
    from tests.fakes import FakeHTTPServer, resend_responder
    from tests.helpers import client_for, make_settings

    with FakeHTTPServer(resend_responder()) as resend:
        settings = make_settings(
            database_url,
            EMAIL_PROVIDER="resend",
            RESEND_API_KEY="re_platform_12345678",
            RESEND_API_URL=resend.url,
        )
        async with client_for(create_app(settings)) as client, running_worker(settings):
            send = {
                "to": "ann@example.com",
                "template": "welcome",
                "data": {"name": "A", "login_url": "u"},
            }
            nid = (
                await client.post(
                    "/api/v1/notifications/email",
                    json=send,
                    headers={"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]},
                )
            ).json()["id"]

            async def sent() -> bool:
                return bool(await db.fetchval("SELECT provider_message_id FROM notifications"))

            await wait_for(sent)
            email_id = await db.fetchval("SELECT provider_message_id FROM notifications")
            body = resend_event("email.delivered", email_id)
            assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200

            await wait_for_value(
                db, "SELECT status FROM notifications", until=lambda v: v == "delivered"
            )
    _, timeline = await status_and_timeline(db, uuid.UUID(nid))
    assert timeline == ["queued", "sending", "sent", "delivered"]


PM_URL = "/api/v1/gateway/webhooks/postmark"


def basic(password: str, user: str = "postmark") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


PM_AUTH = basic(TEST_SECRETS["POSTMARK_WEBHOOK_SECRET"])


async def postmark_notification(db: asyncpg.Connection, message_id: str) -> uuid.UUID:
    nid = await sent_notification(db, message_id)
    await db.execute("UPDATE notifications SET provider = 'postmark' WHERE id = $1", nid)
    return nid


async def test_postmark_delivery_and_bounce_update_the_notification(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    nid = await postmark_notification(db, "pm-msg-1")
    delivery = {
        "RecordType": "Delivery",
        "MessageID": "pm-msg-1",
        "Recipient": "ann@example.com",
        "DeliveredAt": "2026-11-26T10:00:00Z",
        "Details": "Test delivery",
    }
    bounce = {
        "RecordType": "Bounce",
        "ID": 42,
        "MessageID": "pm-msg-1",
        "Type": "HardBounce",
        "Description": "The server was unable to deliver your message",
        "BouncedAt": "2026-11-26T10:05:00Z",
    }
    for event in (delivery, bounce):
        response = await client.post(PM_URL, json=event, headers=PM_AUTH)
        assert response.status_code == 200
        assert response.json()["duplicate"] is False
    again = await client.post(PM_URL, json=delivery, headers=PM_AUTH)
    assert again.json()["duplicate"] is True
    async with running_worker(settings):

        async def bounced() -> bool:
            return (await status_and_timeline(db, nid))[0] == "bounced"

        await wait_for(bounced)
    _, timeline = await status_and_timeline(db, nid)
    assert sorted(timeline) == ["bounced", "delivered"]
    error = await db.fetchval("SELECT error FROM notifications WHERE id = $1", nid)
    assert "unable to deliver" in error


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Content-Type": "application/json"}, "missing_credentials"),
        (basic("wrong-password"), "invalid_credentials"),
        (
            {"Authorization": "Bearer x", "Content-Type": "application/json"},
            "malformed_credentials",
        ),
        (
            {"Authorization": "Basic !!!", "Content-Type": "application/json"},
            "malformed_credentials",
        ),
    ],
)
async def test_postmark_without_the_right_credentials_is_401_and_not_stored(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    reason: str,
) -> None:
    event = {"RecordType": "Delivery", "MessageID": "m"}
    with caplog.at_level(logging.WARNING, logger="mimic"):
        response = await client.post(PM_URL, json=event, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert TEST_SECRETS["POSTMARK_WEBHOOK_SECRET"] not in caplog.text + response.text


async def test_postmark_bad_json_is_400(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    response = await client.post(PM_URL, content=b"{nope", headers=PM_AUTH)
    assert response.status_code == 400
    missing = await client.post(PM_URL, json={"RecordType": "Delivery"}, headers=PM_AUTH)
    assert missing.json()["error"] == "invalid_event"
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0
