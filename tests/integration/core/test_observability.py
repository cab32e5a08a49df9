"""Request ids, JSON logs, and the ids on every log line of a job."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.logs import bound, configure_logging, mask_addresses
from mimic.core.settings import Settings
from tests.fakes import SmtpSink
from tests.helpers import (
    ADMIN,
    TEST_SECRETS,
    client_for,
    dev_mail_settings,
    live_api,
    make_settings,
    running_worker,
    wait_for,
    wait_for_value,
)


async def test_a_request_id_is_kept_or_made_returned_and_logged(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        given = await client.get("/api/v1/templates", headers={**ADMIN, "X-Request-ID": "req-42"})
        bad = await client.post(
            "/api/v1/gateway/webhooks/stripe",
            content=b"{}",
            headers={"X-Request-ID": "not valid!", "Stripe-Signature": "t=1,v1=x"},
        )
    assert given.headers["x-request-id"] == "req-42"
    made = bad.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    access = [r for r in caplog.records if r.name == "mimic.access"]
    assert [r.getMessage().split(" -> ")[0] for r in access] == [
        "GET /api/v1/templates",
        "POST /api/v1/gateway/webhooks/stripe",
    ]
    assert access[0].request_id == "req-42"  # type: ignore[attr-defined]
    assert "key=key_" in access[0].getMessage()
    rejected = [r for r in caplog.records if r.name == "mimic.webhooks.controller"]
    assert rejected
    assert all(r.request_id == made for r in rejected)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("root_logging")
def test_production_logs_are_json_lines_with_ids_and_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = msgspec.structs.replace(Settings.from_env(TEST_SECRETS), env="production")
    configure_logging(settings)
    secret = TEST_SECRETS["STRIPE_WEBHOOK_SECRET"]
    with bound(request_id="req-7", notification_id="n-1"):
        logging.getLogger("mimic.test").warning("leaked %s here", secret)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert {"time", "level", "logger", "message", "request_id", "notification_id"} <= set(entry)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "mimic.test"
    assert entry["request_id"] == "req-7"
    assert secret not in line
    assert "[redacted]" in entry["message"]


@pytest.mark.usefixtures("root_logging")
def test_dev_logs_are_text_with_the_ids_at_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings.from_env({}))
    with bound(delivery_id="d-9"):
        logging.getLogger("mimic.test").info("hello")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("INFO mimic.test: hello delivery_id=d-9")


async def test_every_log_line_of_a_job_names_its_job_and_notification(
    client: AsyncTestClient[Litestar],
    database_url: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SmtpSink() as smtp:
        settings = dev_mail_settings(database_url, smtp.port)
        body = {
            "to": "a@example.com",
            "template": "welcome",
            "data": {"name": "A", "login_url": "u"},
        }
        nid = (await client.post("/api/v1/notifications/email", json=body, headers=ADMIN)).json()[
            "id"
        ]
        with caplog.at_level(logging.INFO):
            async with running_worker(settings):
                await wait_for_value(
                    db, "SELECT status FROM notifications", until=lambda v: v == "sent"
                )
    sent = [r for r in caplog.records if "sent via dev" in r.getMessage()]
    assert len(sent) == 1
    assert sent[0].notification_id == nid  # type: ignore[attr-defined]
    assert int(sent[0].job_id) > 0  # type: ignore[attr-defined]


async def test_metrics_show_the_queues_from_procrastinates_table(database_url: str) -> None:
    body = {"to": "a@example.com", "template": "welcome", "data": {"name": "A", "login_url": "u"}}
    settings = make_settings(database_url, METRICS_QUEUE_CACHE_SECONDS="0")  # read each scrape
    db = await asyncpg.connect(database_url)
    try:
        async with client_for(create_app(settings)) as client:
            for _ in range(3):
                await client.post("/api/v1/notifications/email", json=body, headers=ADMIN)
            await db.execute(
                "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '90 seconds'"
                " WHERE id = (SELECT min(id) FROM procrastinate_jobs)"
            )
            text = (await client.get("/metrics")).text
            assert 'mimic_queue_jobs{queue="email",status="todo"} 3.0' in text
            age = re.search(r'mimic_queue_oldest_todo_seconds\{queue="email"\} ([0-9.e+]+)', text)
            assert age is not None
            assert 89 <= float(age.group(1)) < 200
            await db.execute("UPDATE procrastinate_jobs SET status = 'doing'")
            text = (await client.get("/metrics")).text
    finally:
        await db.close()
    assert 'mimic_queue_jobs{queue="email",status="doing"} 3.0' in text
    # Back to 0, not left at its old value; no job due: an age of 0.
    assert 'mimic_queue_jobs{queue="email",status="todo"} 0.0' in text
    assert 'mimic_queue_oldest_todo_seconds{queue="email"} 0.0' in text


def queue_samples(text: str) -> dict[str, float]:
    """The queue gauges' samples of a scrape, by their name and labels."""
    found = re.findall(r"^(mimic_queue_\w+\{[^}]*\}) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


async def test_idle_queues_report_zero_from_the_first_scrape(
    client: AsyncTestClient[Litestar],
) -> None:
    samples = queue_samples((await client.get("/metrics")).text)
    expected = {
        f'mimic_queue_jobs{{queue="{queue}",status="{status}"}}': 0.0
        for queue in ("webhooks", "email", "maintenance")
        for status in ("todo", "doing")
    } | {
        f'mimic_queue_oldest_todo_seconds{{queue="{queue}"}}': 0.0
        for queue in ("webhooks", "email", "maintenance")
    }
    assert samples == expected


async def test_the_queues_are_read_once_per_interval_whatever_the_scrape_rate(
    database_url: str, db: asyncpg.Connection
) -> None:
    interval = 2.0
    settings = make_settings(database_url, METRICS_QUEUE_CACHE_SECONDS=str(interval))
    todo = 'mimic_queue_jobs{queue="email",status="todo"}'
    body = {"to": "a@example.com", "template": "welcome", "data": {"name": "A", "login_url": "u"}}
    async with client_for(create_app(settings)) as client:
        started = time.monotonic()
        assert queue_samples((await client.get("/metrics")).text)[todo] == 0.0
        queued = await client.post("/api/v1/notifications/email", json=body, headers=ADMIN)
        assert queued.status_code == 202
        assert await db.fetchval("SELECT count(*) FROM procrastinate_jobs") == 1
        scrapes = [queue_samples((await client.get("/metrics")).text)[todo] for _ in range(20)]
        assert time.monotonic() - started < interval, "too slow to observe the interval"
        assert scrapes == [0.0] * 20  # the job is there, the scrapes are served the last read

        async def shown() -> bool:
            return queue_samples((await client.get("/metrics")).text)[todo] == 1.0

        await wait_for(shown, within=interval + 5)
    assert time.monotonic() - started >= interval


async def test_concurrent_scrapes_share_one_read(database_url: str, db: asyncpg.Connection) -> None:
    settings = make_settings(database_url, METRICS_QUEUE_CACHE_SECONDS="0")
    waiting_reads = """
        SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query LIKE '%FROM procrastinate_jobs%'
    """
    # A real server: the test client runs one request at a time.
    async with live_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
        await http.get("/metrics")  # the pool is open and warm
        # Reads of procrastinate's table wait while this lock is held: every read that a
        # scrape starts shows in pg_stat_activity.
        blocker = await asyncpg.connect(database_url)
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE procrastinate_jobs IN ACCESS EXCLUSIVE MODE")
            scrapes = [asyncio.create_task(http.get("/metrics")) for _ in range(10)]
            await wait_for_value(db, waiting_reads, until=lambda n: n >= 1)
            await asyncio.sleep(0.3)  # time for a herd to gather, if there were one
            assert await db.fetchval(waiting_reads) == 1
            await tx.rollback()
        finally:
            await blocker.close()
        answers = await asyncio.gather(*scrapes)
    assert {a.status_code for a in answers} == {200}
    assert len({tuple(sorted(queue_samples(a.text).items())) for a in answers}) == 1


async def test_the_access_log_masks_addresses_in_paths(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    added = await client.post(
        "/api/v1/suppressions",
        json={"email": "ann.lee@example.com", "tenant_id": "acme"},
        headers=ADMIN,
    )
    assert added.status_code == 201, added.text
    with caplog.at_level(logging.INFO, logger="mimic.access"):
        removed = await client.delete(
            "/api/v1/suppressions/ann.lee@example.com?tenant_id=acme", headers=ADMIN
        )
        encoded = await client.delete("/api/v1/suppressions/bob%40example.org", headers=ADMIN)
    assert removed.status_code == 204, removed.text
    assert encoded.status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "mimic.access"]
    assert [line.split(" in ")[0] for line in lines] == [
        "DELETE /api/v1/suppressions/a***@example.com -> 204",
        "DELETE /api/v1/suppressions/b***@example.org -> 404",
    ]
    assert "ann.lee" not in caplog.text
    assert "bob" not in caplog.text


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/v1/templates", "/api/v1/templates"),
        ("/api/v1/suppressions/a@b.example", "/api/v1/suppressions/a***@b.example"),
        ("/x/@example.com/y", "/x/***@example.com/y"),
        # An ASGI path is decoded once; an @ the client encoded twice is still found.
        ("/x/bob%40example.com", "/x/b***@example.com"),
    ],
)
def test_mask_addresses_keeps_the_path_and_only_the_shape_of_an_address(
    path: str, logged: str
) -> None:
    assert mask_addresses(path) == logged
