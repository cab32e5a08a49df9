"""Request ids, JSON logs, and the ids on every log line of a job."""

from __future__ import annotations

import json
import logging
import re

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.logs import bound, configure_logging
from mimic.core.settings import Settings
from tests.fakes import SmtpSink
from tests.helpers import (
    ADMIN,
    TEST_SECRETS,
    dev_mail_settings,
    running_worker,
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


async def test_metrics_show_the_queues_from_procrastinates_table(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    body = {"to": "a@example.com", "template": "welcome", "data": {"name": "A", "login_url": "u"}}
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
    assert 'mimic_queue_jobs{queue="email",status="doing"} 3.0' in text
    assert 'status="todo"' not in text  # gone, not left at its old value
    assert "mimic_queue_oldest_todo_seconds{" not in text
