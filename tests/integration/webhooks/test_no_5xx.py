"""No 5xx from input: every case a fuzzing run found answers a 4xx with Mimic's error body,
is counted and logged as a rejection, and stores nothing."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from mimic.app import create_app
from tests.helpers import TEST_SECRETS, client_for, make_settings, stripe_headers

WEBHOOKS = "/api/v1/gateway/webhooks"
KEY = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}
DEEP = "[" * 5000 + "]" * 5000


async def stored(db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        await db.fetchval("SELECT count(*) FROM webhook_events"),
        await db.fetchval("SELECT count(*) FROM notifications"),
        await db.fetchval("SELECT count(*) FROM procrastinate_jobs"),
    )


def rejected(provider: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "mimic_webhooks_rejected_total", {"provider": provider, "reason": reason}
    )
    return value or 0.0


def svix(signature: str, timestamp: str | bytes | None = None) -> dict[str, Any]:
    return {
        "svix-id": "msg_1",
        "svix-timestamp": timestamp if timestamp is not None else str(int(time.time())),
        "svix-signature": signature,
    }


RESEND = [
    (svix("v1,abc"), b'{"type": "email.sent"}', "malformed_signature"),
    (svix("v1,YWJj,x"), b'{"type": "email.sent"}', "malformed_signature"),
    (svix("v1,YWJj"), b"\xff\xfe not utf-8", "invalid_body"),
    # '²' is a digit to str.isdigit() (one latin-1 byte on the wire).
    (svix("v1,YWJj", timestamp=b"\xb2"), b"{}", "malformed_signature"),
]


@pytest.mark.parametrize(("headers", "body", "reason"), RESEND)
async def test_malformed_resend_webhooks_are_400(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    headers: dict[str, Any],
    body: bytes,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, counted = await stored(db), rejected("resend", reason)
    with caplog.at_level(logging.WARNING, logger="mimic.webhooks.controller"):
        response = await client.post(f"{WEBHOOKS}/resend", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == reason
    assert await stored(db) == before
    assert rejected("resend", reason) == counted + 1
    assert [r for r in caplog.records if "rejected resend webhook" in r.getMessage()]
    assert not [r for r in caplog.records if r.exc_info]  # one line, no traceback


async def test_a_postmark_body_that_is_not_utf8_is_400(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    password = TEST_SECRETS["POSTMARK_WEBHOOK_SECRET"]
    auth = "Basic " + base64.b64encode(f"postmark:{password}".encode()).decode()
    before = await stored(db)
    response = await client.post(
        f"{WEBHOOKS}/postmark",
        content=b'\xff{"RecordType": "Delivery"}',
        headers={"Authorization": auth},
    )
    assert response.status_code == 400
    assert await stored(db) == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f'{{"id": "evt_deep", "type": "invoice.paid", "data": {DEEP}}}', "invalid_json"),
        # Deeper than MAX_JSON_DEPTH, though no decoder gives up this shallow on any Python.
        (
            f'{{"id": "evt_65", "type": "invoice.paid", "data": {{"a": {"[" * 64 + "]" * 64}}}}}',
            "invalid_json",
        ),
        (json.dumps({"id": "evt_" + "x" * 8000, "type": "invoice.paid"}), "invalid_event"),
    ],
)
async def test_signed_stripe_events_too_deep_or_with_huge_ids_are_400(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, body: str, reason: str
) -> None:
    before = await stored(db)
    raw = body.encode()
    response = await client.post(f"{WEBHOOKS}/stripe", content=raw, headers=stripe_headers(raw))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == reason
    assert await stored(db) == before


WELCOME = {"to": "a@example.com", "template": "welcome", "data": {"name": "A", "login_url": "u"}}
YEAR_ONE = base64.urlsafe_b64encode(
    b"0001-01-01T00:00:00+05:00|00000000-0000-0000-0000-000000000000"
).decode()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/notifications/email", {**WELCOME, "data": {"name": "A\u0000"}}),
        ("POST", "/api/v1/notifications/email", {**WELCOME, "tags": {"k": "\u0000"}}),
        (
            "POST",
            "/api/v1/notifications/email",
            {**WELCOME, "send_at": "0001-01-01T00:00:00+05:00"},
        ),
        ("GET", f"/api/v1/notifications?cursor={YEAR_ONE}", None),
        (
            "POST",
            "/api/v1/notifications/email",
            f'{{"to": "a@example.com", "template": "welcome", "data": {{"x": {DEEP}}}}}',
        ),
        (
            "POST",
            "/api/v1/templates/welcome/preview",
            {"data": WELCOME["data"], "locale": "a" * 300},
        ),
        (
            "POST",
            "/api/v1/templates/welcome/preview",
            {"data": WELCOME["data"], "locale": "en" + "-ab" * 8000},
        ),
    ],
)
async def test_notification_inputs_that_used_to_500_are_4xx(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    method: str,
    path: str,
    body: Any,
) -> None:
    before = await stored(db)
    content = (
        body.encode() if isinstance(body, str) else json.dumps(body).encode() if body else None
    )
    response = await client.request(
        method, path, content=content, headers={**KEY, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) == {"error", "detail"}
    assert await stored(db) == before


async def test_an_unset_stripe_secret_is_503_logged_and_counted(
    database_url: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, STRIPE_WEBHOOK_SECRET="")
    counted = rejected("stripe", "not_configured")
    body = b'{"id": "evt_1", "type": "invoice.paid"}'
    with caplog.at_level(logging.WARNING, logger="mimic.webhooks.controller"):
        async with client_for(create_app(settings)) as client:
            response = await client.post(
                f"{WEBHOOKS}/stripe", content=body, headers=stripe_headers(body)
            )
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"
    assert rejected("stripe", "not_configured") == counted + 1
    assert any("not_configured" in r.getMessage() for r in caplog.records)
    assert await stored(db) == (0, 0, 0)
