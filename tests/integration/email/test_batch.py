"""Batch send: up to 100 messages, validated first, stored and queued in one transaction."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.settings import Settings
from tests.fakes import SmtpSink
from tests.helpers import ADMIN, dev_mail_settings, running_worker, wait_for_value

BATCH = "/api/v1/notifications/email/batch"


def message(to: str, **extra: Any) -> dict[str, Any]:
    return {
        "to": to,
        "template": "welcome",
        "data": {"name": "A", "login_url": "https://example.com"},
        **extra,
    }


@pytest.fixture
def settings(database_url: str, smtp: SmtpSink) -> Settings:
    return dev_mail_settings(database_url, smtp.port)


async def stored(db: asyncpg.Connection) -> tuple[int, int]:
    notifications = await db.fetchval("SELECT count(*) FROM notifications")
    jobs = await db.fetchval(
        "SELECT count(*) FROM procrastinate_jobs"
        " WHERE task_name IN ('mimic.tasks.send_email', 'mimic.tasks.send_emails')"
    )
    return int(notifications), int(jobs)


async def test_a_batch_is_queued_at_once_and_sent(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    body = {"messages": [message(f"u{i}@example.com") for i in range(3)]}
    response = await client.post(BATCH, json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert len({r["id"] for r in results}) == 3
    assert all(r["status"] == "queued" and not r["replayed"] for r in results)
    # One job sends the whole batch, and owns each send.
    assert await stored(db) == (3, 1)
    job = await db.fetchrow("SELECT id, task_name, args FROM procrastinate_jobs")
    assert job is not None
    assert job["task_name"] == "mimic.tasks.send_emails"
    assert sorted(json.loads(job["args"])["notification_ids"]) == sorted(r["id"] for r in results)
    owners = await db.fetch("SELECT DISTINCT job_id FROM notifications")
    assert [r["job_id"] for r in owners] == [job["id"]]
    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT count(*) FROM notifications WHERE status = 'sent'",
            until=lambda v: v == 3,
        )
    assert sorted(m["To"] for m in smtp.messages) == [f"u{i}@example.com" for i in range(3)]


async def test_one_invalid_message_refuses_the_batch_and_names_each_failure(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    await client.post("/api/v1/suppressions", json={"email": "no@example.com"}, headers=ADMIN)
    body = {
        "messages": [
            message("ok@example.com"),
            {**message("x@example.com"), "template": "no_such_template"},
            message("no@example.com"),
        ]
    }
    response = await client.post(BATCH, json=body, headers=ADMIN)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "messages[1]: unknown_template" in detail
    assert "messages[2]: recipient_suppressed" in detail
    assert "messages[0]" not in detail
    assert await stored(db) == (0, 0)


@pytest.mark.parametrize("count", [0, 101])
async def test_the_batch_size_is_limited(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, count: int
) -> None:
    body = {"messages": [message(f"u{i}@example.com") for i in range(count)]}
    response = await client.post(BATCH, json=body, headers=ADMIN)
    assert response.status_code == 400
    assert set(response.json()) == {"error", "detail"}
    assert await stored(db) == (0, 0)


async def test_keys_per_message_replay_and_may_not_repeat_within_a_batch(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    body = {"messages": [message("a@example.com", idempotency_key="k-a"), message("b@example.com")]}
    first = await client.post(BATCH, json=body, headers=ADMIN)
    again = await client.post(BATCH, json=body, headers=ADMIN)
    assert again.status_code == 202
    assert again.json()["results"][0] == {**first.json()["results"][0], "replayed": True}
    assert again.json()["results"][1]["id"] != first.json()["results"][1]["id"]  # no key
    assert await stored(db) == (3, 2)  # a job for the first batch, one for the new message

    twice = {"messages": [message("c@example.com", idempotency_key="k-c")] * 2}
    refused = await client.post(BATCH, json=twice, headers=ADMIN)
    assert refused.status_code == 422
    assert "messages[1]: duplicate_idempotency_key" in refused.json()["detail"]
    assert await stored(db) == (3, 2)
