"""Several sends in one job (`mimic.tasks.send_emails`): a batch's, or single sends stored
together by the group commit. Each send is still owned by exactly one job at a time."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from mimic.app import create_app
from mimic.core.settings import EmailProvider, Settings
from tests.fakes import SmtpSink
from tests.helpers import (
    ADMIN,
    commit_held,
    dev_mail_settings,
    group_commit_sizes,
    insert_waits,
    live_api,
    running_worker,
    wait_for,
    wait_for_value,
)

SEND = "/api/v1/notifications/email"


def message(to: str) -> dict[str, object]:
    return {"to": to, "template": "welcome", "data": {"name": "A", "login_url": "https://e.x"}}


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink(refuse={"never@example.com"}, later={"later@example.com": 1}) as sink:
        yield sink


@pytest.fixture
def settings(database_url: str, smtp: SmtpSink) -> Settings:
    return dev_mail_settings(
        database_url,
        smtp.port,
        EMAIL_BACKOFF_BASE_SECONDS="0.05",
        EMAIL_BACKOFF_MAX_SECONDS="0.2",
    )


async def test_a_send_to_retry_moves_to_its_own_job_and_a_failure_fails_the_group(
    settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    to = ["ok@example.com", "later@example.com", "never@example.com"]
    async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            f"{SEND}/batch", json={"messages": [message(t) for t in to]}, headers=ADMIN
        )
    assert response.status_code == 202, response.text
    ids = {t: uuid.UUID(r["id"]) for t, r in zip(to, response.json()["results"], strict=True)}
    group = await db.fetchval("SELECT id FROM procrastinate_jobs")

    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT count(*) FROM notifications WHERE status IN ('sent', 'failed')",
            until=lambda v: v == 3,
        )
        await wait_for_value(
            db,
            "SELECT status::text FROM procrastinate_jobs WHERE id = $1",
            group,
            until=lambda v: v == "failed",
        )

    statuses = {
        r["id"]: r["status"] for r in await db.fetch("SELECT id, status FROM notifications")
    }
    assert [statuses[ids[t]] for t in to] == ["sent", "sent", "failed"]
    # Each message reached the server once (the 451 was not a delivery).
    assert sorted(str(m["To"]) for m in smtp.messages) == ["later@example.com", "ok@example.com"]
    # The retried send moved to a send_email job of its own, which sent it.
    owner = await db.fetchrow(
        "SELECT j.id, j.task_name, j.status::text AS status, j.args FROM notifications n"
        " JOIN procrastinate_jobs j ON j.id = n.job_id WHERE n.id = $1",
        ids["later@example.com"],
    )
    assert owner is not None
    assert owner["id"] != group
    assert (owner["task_name"], owner["status"]) == ("mimic.tasks.send_email", "succeeded")
    assert json.loads(owner["args"]) == {"notification_id": str(ids["later@example.com"])}
    timeline = await db.fetch(
        "SELECT status FROM notification_events WHERE notification_id = $1 ORDER BY id",
        ids["later@example.com"],
    )
    assert [r["status"] for r in timeline] == [
        "queued",
        "sending",
        "provider_failed",
        "retrying",
        "sending",
        "sent",
    ]


async def test_a_shared_job_that_runs_again_sends_nothing_it_no_longer_owns(
    database_url: str, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    """A shared job can run again (the stalled-job sweep, a database outage in one of its
    sends, an operator's retry): a send moved to its own job, or failed for good, is not
    sent by it again."""
    # later@'s retry waits in its own job (a long backoff) while the group runs again.
    settings = dev_mail_settings(
        database_url,
        smtp.port,
        EMAIL_BACKOFF_BASE_SECONDS="60",
        EMAIL_BACKOFF_MAX_SECONDS="120",
    )
    to = ["ok@example.com", "later@example.com", "never@example.com"]
    async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
        await http.post(f"{SEND}/batch", json={"messages": [message(t) for t in to]}, headers=ADMIN)
    group = await db.fetchval("SELECT id FROM procrastinate_jobs")
    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT status::text FROM procrastinate_jobs WHERE id = $1",
            group,
            until=lambda v: v == "failed",
        )
        smtp.refuse.clear()  # never@ would be taken now, if it were sent again
        # What the stalled-job sweep and `mimic jobs retry <id>` do.
        await db.execute("SELECT procrastinate_retry_job_v2($1, now(), NULL, NULL, NULL)", group)
        await wait_for_value(
            db,
            "SELECT status::text FROM procrastinate_jobs WHERE id = $1",
            group,
            until=lambda v: v == "succeeded",
        )
    rows = await db.fetch('SELECT "to", status, job_id FROM notifications')
    found = {r["to"][0]: (r["status"], r["job_id"]) for r in rows}
    assert found["ok@example.com"] == ("sent", group)
    # Failed for good: released by the shared job (owned by no job).
    assert found["never@example.com"] == ("failed", 0)
    # Waiting for its own job: the group's second run left it alone.
    assert found["later@example.com"][0] == "queued"
    assert found["later@example.com"][1] not in (group, 0)
    assert [str(m["To"]) for m in smtp.messages] == ["ok@example.com"]


async def test_single_sends_queued_behind_a_commit_share_one_job(
    settings: Settings, database_url: str, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    app = create_app(settings)
    before = group_commit_sizes("emails")
    async with live_api(settings, app) as base, httpx.AsyncClient(base_url=base) as http:
        async with commit_held(database_url, "notifications") as watcher:
            first = asyncio.create_task(
                http.post(SEND, json=message("first@example.com"), headers=ADMIN)
            )
            await wait_for(lambda: insert_waits(watcher, "notifications"))
            rest = [
                asyncio.create_task(
                    http.post(SEND, json=message(f"u{i}@example.com"), headers=ADMIN)
                )
                for i in range(5)
            ]
            sends = app.state.deps.db.group_commits["emails"]

            async def all_queued() -> bool:
                return bool(sends.waiting == 5)

            await wait_for(all_queued)
        answers = [await first, *await asyncio.gather(*rest)]
    assert [a.status_code for a in answers] == [202] * 6
    after = group_commit_sizes("emails")
    assert (after[0] - before[0], after[1] - before[1]) == (2, 6)
    jobs = await db.fetch("SELECT task_name, args FROM procrastinate_jobs ORDER BY id")
    assert [j["task_name"] for j in jobs] == ["mimic.tasks.send_email", "mimic.tasks.send_emails"]
    grouped = json.loads(jobs[1]["args"])["notification_ids"]
    assert sorted(grouped) == sorted(a.json()["id"] for a in answers[1:])

    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT count(*) FROM notifications WHERE status = 'sent'",
            until=lambda v: v == 6,
        )
    assert len(smtp.messages) == 6


async def test_sends_at_once_share_at_most_ten_smtp_connections(
    database_url: str, db: asyncpg.Connection
) -> None:
    # Two shared jobs of 15 run 20 sends at once (WORKER_CONCURRENCY 10 each): the pool
    # keeps at most 10 connections to the server, and the others wait for one.
    with SmtpSink() as smtp:
        settings = dev_mail_settings(database_url, smtp.port)
        async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
            for batch in range(2):
                body = {"messages": [message(f"b{batch}u{i}@example.com") for i in range(15)]}
                assert (await http.post(f"{SEND}/batch", json=body, headers=ADMIN)).is_success
        async with running_worker(settings):
            await wait_for_value(
                db,
                "SELECT count(*) FROM notifications WHERE status = 'sent'",
                until=lambda v: v == 30,
            )
        assert len(smtp.messages) == 30
        assert 1 <= smtp.connections <= 10


async def test_claims_and_sent_records_made_meanwhile_are_written_together(
    settings: Settings, database_url: str, db: asyncpg.Connection
) -> None:
    """A worker's sends running at once: the claims (and the sent records) that come while
    one is being written are written together, each still only by the job that owns it."""
    from mimic.core.deps import open_deps
    from mimic.email import status

    async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
        body = {"messages": [message(f"u{i}@example.com") for i in range(5)]}
        response = await http.post(f"{SEND}/batch", json=body, headers=ADMIN)
    ids = [uuid.UUID(r["id"]) for r in response.json()["results"]]
    job = await db.fetchval("SELECT id FROM procrastinate_jobs")

    async def together(first: Any, rest: list[Any], writer: str) -> list[Any]:
        """``first`` is held writing (its timeline insert waits on a lock); ``rest`` queue
        behind it, then go in one statement."""
        async with commit_held(database_url, "notification_events") as watcher:
            head = asyncio.create_task(first)
            await wait_for(lambda: insert_waits(watcher, "notification_events"))
            tail = [asyncio.create_task(r) for r in rest]

            async def all_queued() -> bool:
                return bool(deps.db.group_commits[writer].waiting == len(rest))

            await wait_for(all_queued)
        return [await head, *await asyncio.gather(*tail)]

    async with open_deps(settings) as deps:
        before = group_commit_sizes(status.CLAIMS)
        claimed = await together(
            status.claim(deps.db, ids[0], job),
            [
                status.claim(deps.db, ids[2], job + 1),  # by a job that does not own it, first
                *(status.claim(deps.db, i, job) for i in ids[1:]),
                status.claim(deps.db, ids[1], job),  # asked twice in one statement
            ],
            status.CLAIMS,
        )
        after = group_commit_sizes(status.CLAIMS)
        assert (after[0] - before[0], after[1] - before[1]) == (2, 7)
        assert [c.id if c else None for c in claimed] == [ids[0], None, *ids[1:], None]
        assert all(c.attempts == 1 for c in claimed if c)

        before = group_commit_sizes(status.SENT)
        providers: list[EmailProvider] = ["dev", "smtp", "dev", "smtp", "dev"]
        sent = [
            status.mark_sent(deps.db, i, f"m{n}", f"message m{n}", provider=providers[n])
            for n, i in enumerate(ids)
        ]
        await together(sent[0], sent[1:], status.SENT)
        after = group_commit_sizes(status.SENT)
        assert (after[0] - before[0], after[1] - before[1]) == (2, 5)

    rows = await db.fetch("SELECT id, status, provider, provider_message_id FROM notifications")
    assert {r["id"]: (r["status"], r["provider"], r["provider_message_id"]) for r in rows} == {
        i: ("sent", providers[n], f"m{n}") for n, i in enumerate(ids)
    }
    for n, nid in enumerate(ids):
        timeline = await db.fetch(
            "SELECT status, detail FROM notification_events WHERE notification_id = $1 ORDER BY id",
            nid,
        )
        assert [(r["status"], r["detail"]) for r in timeline] == [
            ("queued", None),
            ("sending", "attempt 1 via dev"),
            ("sent", f"message m{n}"),
        ]
