"""The suppression list: hard bounces and complaints stop the next send; soft bounces don't."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, Received, Reply, resend_responder
from tests.helpers import ADMIN, client_for, make_settings, running_worker, wait_for_value
from tests.integration.email.test_email_events import PM_AUTH, PM_URL, resend_event, signed

SEND = "/api/v1/notifications/email"
RESEND_HOOK = "/api/v1/gateway/webhooks/resend"


def welcome(to: str | list[str], tenant: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to": to,
        "template": "welcome",
        "data": {"name": "A", "login_url": "https://example.com"},
        **extra,
    }
    if tenant is not None:
        body["tenant_id"] = tenant
    return body


@pytest.fixture
def resend() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(resend_responder()) as server:
        yield server


@pytest.fixture
def settings(database_url: str, resend: FakeHTTPServer) -> Settings:
    return make_settings(
        database_url,
        EMAIL_PROVIDER="resend",
        RESEND_API_KEY="re_platform_12345678",
        RESEND_API_URL=resend.url,
    )


async def jobs(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'mimic.tasks.send_email'"
        )
    )


async def send_and_wait_sent(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, body: dict[str, Any]
) -> str:
    response = await client.post(SEND, json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    nid = response.json()["id"]
    value: str = await wait_for_value(
        db,
        "SELECT provider_message_id FROM notifications WHERE id = $1",
        uuid.UUID(nid),
        until=lambda v: v is not None,
    )
    return value


async def test_a_hard_bounce_through_a_signed_webhook_refuses_the_next_send(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    async with running_worker(settings):
        email_id = await send_and_wait_sent(client, db, welcome("Ann@Example.COM"))
        bounce = resend_event(
            "email.bounced",
            email_id,
            bounce={"type": "Permanent", "subType": "General", "message": "no such user"},
            to=["Ann@Example.COM"],
        )
        hook = await client.post(RESEND_HOOK, content=bounce, headers=signed(bounce))
        assert hook.status_code == 200
        await wait_for_value(
            db, "SELECT reason FROM suppressions", until=lambda v: v == "hard_bounce"
        )
    before = await jobs(db)
    refused = await client.post(SEND, json=welcome(["bob@example.com", "Ann@EXAMPLE.com"]))
    assert refused.status_code == 401  # (no key) sanity: the route is guarded
    refused = await client.post(
        SEND, json=welcome(["bob@example.com", "Ann@EXAMPLE.com"]), headers=ADMIN
    )
    assert refused.status_code == 422
    assert refused.json()["error"] == "recipient_suppressed"
    assert "Ann@example.com" in refused.json()["detail"]
    assert await jobs(db) == before  # the whole request refused, nothing queued
    # The local part compares exactly: ann@ is another mailbox.
    assert (await client.post(SEND, json=welcome("ann@example.com"), headers=ADMIN)).is_success
    row = await db.fetchrow("SELECT * FROM suppressions")
    assert row is not None
    assert (row["tenant"], row["address"], row["provider"]) == ("", "Ann@example.com", "resend")
    assert row["notification_id"] is not None
    metrics = (await client.get("/metrics")).text
    assert 'mimic_suppressions_added_total{reason="hard_bounce"}' in metrics
    assert 'mimic_sends_refused_total{reason="suppressed"}' in metrics


async def test_a_bounce_of_a_message_to_several_recipients_suppresses_none(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    async with running_worker(settings):
        email_id = await send_and_wait_sent(
            client, db, welcome(["one@example.com", "two@example.com"])
        )
        bounce = resend_event(
            "email.bounced",
            email_id,
            bounce={"type": "Permanent"},
            to=["one@example.com", "two@example.com"],
        )
        await client.post(RESEND_HOOK, content=bounce, headers=signed(bounce))
        await wait_for_value(db, "SELECT status FROM notifications", until=lambda v: v == "bounced")
    # Resend does not say which of them bounced: suppressing both would stop working mail.
    assert await db.fetchval("SELECT count(*) FROM suppressions") == 0


async def test_a_soft_bounce_does_not_suppress(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    async with running_worker(settings):
        email_id = await send_and_wait_sent(client, db, welcome("soft@example.com"))
        bounce = resend_event("email.bounced", email_id, bounce={"type": "Transient"})
        await client.post(RESEND_HOOK, content=bounce, headers=signed(bounce))
        await wait_for_value(db, "SELECT status FROM notifications", until=lambda v: v == "bounced")
    assert await db.fetchval("SELECT count(*) FROM suppressions") == 0
    assert (await client.post(SEND, json=welcome("soft@example.com"), headers=ADMIN)).is_success


async def test_suppression_is_per_tenant_and_a_complaint_needs_force(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    async with running_worker(settings):
        email_id = await send_and_wait_sent(client, db, welcome("cat@example.com", "acme"))
        complaint = resend_event("email.complained", email_id, to=["cat@example.com"])
        await client.post(RESEND_HOOK, content=complaint, headers=signed(complaint))
        await wait_for_value(
            db, "SELECT reason FROM suppressions", until=lambda v: v == "complaint"
        )
    acme = await client.post(SEND, json=welcome("cat@example.com", "acme"), headers=ADMIN)
    assert acme.status_code == 422
    globex = await client.post(SEND, json=welcome("cat@example.com", "globex"), headers=ADMIN)
    assert globex.status_code == 202

    listed = await client.get("/api/v1/suppressions?tenant_id=acme", headers=ADMIN)
    assert [(s["email"], s["reason"]) for s in listed.json()["items"]] == [
        ("cat@example.com", "complaint")
    ]
    url = "/api/v1/suppressions/cat@example.com?tenant_id=acme"
    refused = await client.delete(url, headers=ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"] == "complaint_needs_force"
    assert (await client.delete(url + "&force=true", headers=ADMIN)).status_code == 204
    assert (
        await client.post(SEND, json=welcome("cat@example.com", "acme"), headers=ADMIN)
    ).is_success
    audit = await db.fetch("SELECT action, outcome, detail FROM audit_log ORDER BY id")
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("remove_suppression", "complaint_needs_force"),
        ("remove_suppression", "ok"),
    ]
    assert json.loads(audit[1]["detail"])["reason"] == "complaint"


async def test_postmark_complaint_and_hard_bounce_suppress_the_recipient(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    from tests.integration.email.test_email_events import postmark_notification

    for message_id in ("pm-1", "pm-2", "pm-3"):
        await postmark_notification(db, message_id)
    soft = {"RecordType": "Bounce", "MessageID": "pm-1", "Type": "SoftBounce", "Email": "x@a.io"}
    hard = {"RecordType": "Bounce", "MessageID": "pm-3", "Type": "HardBounce", "Email": "h@a.io"}
    spam = {"RecordType": "SpamComplaint", "MessageID": "pm-2", "Email": "s@a.io"}
    for payload in (soft, hard, spam):
        response = await client.post(PM_URL, content=json.dumps(payload), headers=PM_AUTH)
        assert response.status_code == 200
    async with running_worker(settings):
        await wait_for_value(db, "SELECT count(*) FROM suppressions", until=lambda v: v == 2)
    rows = await db.fetch("SELECT address, reason FROM suppressions ORDER BY address")
    assert [(r["address"], r["reason"]) for r in rows] == [
        ("h@a.io", "hard_bounce"),
        ("s@a.io", "complaint"),
    ]


async def test_postmark_406_suppresses_the_inactive_recipient(
    database_url: str, db: asyncpg.Connection
) -> None:
    def inactive(request: Received) -> Reply:
        return Reply(
            status=422,
            body={
                "ErrorCode": 406,
                "Message": "You tried to send to a recipient that has been marked as inactive.",
            },
        )

    with FakeHTTPServer(inactive) as postmark:
        settings = make_settings(
            database_url,
            EMAIL_PROVIDER="postmark",
            POSTMARK_SERVER_TOKEN="pm-platform-token",
            POSTMARK_API_URL=postmark.url,
        )
        async with client_for(create_app(settings)) as client, running_worker(settings):
            sent = await client.post(SEND, json=welcome("gone@example.com"), headers=ADMIN)
            assert sent.status_code == 202
            await wait_for_value(
                db, "SELECT reason FROM suppressions", until=lambda v: v == "inactive_recipient"
            )
            again = await client.post(SEND, json=welcome("gone@example.com"), headers=ADMIN)
    assert again.status_code == 422
    assert await db.fetchval("SELECT status FROM notifications") == "failed"


async def test_manual_add_and_tenant_keys_see_only_their_list(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    from mimic.core.deps import open_deps
    from mimic.core.keys import create_key

    async with open_deps(settings) as deps:
        _, key = await create_key(deps.db, "acme", by="test")
    acme = {"X-API-Key": key}
    added = await client.post("/api/v1/suppressions", json={"email": "m@Example.com"}, headers=acme)
    assert added.status_code == 201, added.text
    assert added.json()["email"] == "m@example.com"
    assert added.json()["tenant_id"] == "acme"
    assert added.json()["reason"] == "manual"
    other = await client.get("/api/v1/suppressions?tenant_id=globex", headers=acme)
    assert other.status_code == 403
    platform = await client.get("/api/v1/suppressions", headers=ADMIN)
    assert platform.json()["items"] == []  # the platform's list is its own
    mine = await client.get("/api/v1/suppressions", headers=acme)
    assert [s["email"] for s in mine.json()["items"]] == ["m@example.com"]
    bad = await client.post("/api/v1/suppressions", json={"email": "not an address"}, headers=acme)
    assert bad.status_code == 422
    refused = await client.post(SEND, json=welcome("m@example.com"), headers=acme)
    assert refused.status_code == 422
