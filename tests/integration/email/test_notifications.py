"""POST/GET /api/v1/notifications and /api/v1/templates against real Postgres and SMTP."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import SmtpSink
from tests.helpers import (
    TEST_SECRETS,
    client_for,
    dev_mail_settings,
    live_api,
    make_settings,
    running_worker,
    wait_for_value,
)

AUTH = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}
WELCOME = {
    "to": "ann@example.com",
    "template": "welcome",
    "data": {"name": "Ann", "login_url": "https://app.example.com/login"},
}


@pytest.fixture
def settings(database_url: str, smtp: SmtpSink) -> Settings:
    return dev_mail_settings(
        database_url,
        smtp.port,
        MIMIC_API_KEYS=TEST_SECRETS["MIMIC_API_KEYS"] + ",second-caller-key-123",
    )


async def counts(db: asyncpg.Connection) -> tuple[int, int]:
    notifications = await db.fetchval("SELECT count(*) FROM notifications")
    jobs = await db.fetchval(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'mimic.tasks.send_email'"
    )
    return int(notifications), int(jobs)


PROTECTED: list[tuple[str, str, Any]] = [
    ("POST", "/api/v1/notifications/email", WELCOME),
    ("GET", "/api/v1/notifications/5f0c1e3a-6f1b-4c55-9a51-0d6f1c2b7e10", None),  # any id
    ("GET", "/api/v1/notifications", None),
    ("GET", "/api/v1/templates", None),
    ("POST", "/api/v1/templates/welcome/preview", {"data": {}}),
    (
        "PUT",
        "/api/v1/tenants/t1/credentials/resend",
        {"api_key": "re_123456789", "from_email": "a@example.com"},
    ),
    ("GET", "/api/v1/tenants/t1/credentials/resend", None),
    ("DELETE", "/api/v1/tenants/t1/credentials/resend", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}],
    ids=["none", "wrong-x-api-key", "wrong-bearer", "other-scheme"],
)
async def test_every_internal_endpoint_needs_a_key(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "An API key is required: X-API-Key: <key>, or Authorization: Bearer <key>.",
    }
    assert await counts(db) == (0, 0)
    assert await db.fetchval("SELECT count(*) FROM provider_credentials") == 0


@pytest.mark.parametrize(
    "headers",
    [
        AUTH,
        {"Authorization": f"Bearer {TEST_SECRETS['MIMIC_API_KEYS']}"},
        {"X-API-Key": "second-caller-key-123"},
    ],
    ids=["x-api-key", "bearer", "extra-key"],
)
async def test_accepted_keys(client: AsyncTestClient[Litestar], headers: dict[str, str]) -> None:
    assert (await client.get("/api/v1/templates", headers=headers)).status_code == 200


async def test_dev_send_reaches_the_smtp_server_and_is_tracked(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    body = {
        **WELCOME,
        "data": {"name": "Ann <script>", "login_url": "https://app.example.com/login"},
        "cc": ["Bob <bob@example.com>"],
        "bcc": ["audit@example.com"],
        "reply_to": "support@example.com",
        "tags": {"category": "onboarding"},
    }
    response = await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    row = await db.fetchrow("SELECT * FROM notifications WHERE id = $1", uuid.UUID(accepted["id"]))
    assert row is not None
    assert row["subject"] == "Welcome, Ann <script>!"
    assert "Ann &lt;script&gt;" in row["html"]  # autoescaped
    assert "Ann <script>" in row["text"]  # plain text is not HTML
    assert row["provider"] == "dev"

    async with running_worker(settings):
        await wait_for_value(db, "SELECT status FROM notifications", until=lambda v: v == "sent")
    [message] = smtp.messages
    assert message["Subject"] == "Welcome, Ann <script>!"
    assert message["To"] == "ann@example.com"
    assert message["Cc"] == "Bob <bob@example.com>"
    assert message["Reply-To"] == "support@example.com"
    assert message["Message-ID"] == f"<{accepted['id']}@mimic>"
    assert "Bcc" not in message
    mail_from, recipients = smtp.envelopes[0]
    assert mail_from == "no-reply@mimic.local"
    assert set(recipients) == {"ann@example.com", "bob@example.com", "audit@example.com"}
    parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
    assert "Ann &lt;script&gt;" in parts["text/html"]
    assert "https://app.example.com/login" in parts["text/plain"]

    detail = (await client.get(f"/api/v1/notifications/{accepted['id']}", headers=AUTH)).json()
    assert detail["status"] == "sent"
    assert detail["provider_message_id"] == f"<{accepted['id']}@mimic>"
    assert [e["status"] for e in detail["timeline"]] == ["queued", "sending", "sent"]
    assert detail["attempts"] == 1


async def test_non_ascii_names_subjects_and_bodies_arrive_intact(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection, smtp: SmtpSink
) -> None:
    body = {
        **WELCOME,
        "to": "Zoë Müller <zoe@example.com>",
        "data": {"name": "Zoë 日本", "login_url": "https://app.example.com/login"},
    }
    assert (
        await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
    ).status_code == 202
    async with running_worker(settings):
        await wait_for_value(db, "SELECT status FROM notifications", until=lambda v: v == "sent")
    [message] = smtp.messages
    assert message["Subject"] == "Welcome, Zoë 日本!"  # decoded from RFC 2047
    assert message["To"].addresses[0].display_name == "Zoë Müller"
    assert message["To"].addresses[0].addr_spec == "zoe@example.com"
    parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
    assert "Zoë 日本" in parts["text/plain"]
    assert "Zoë 日本" in parts["text/html"]


@pytest.mark.parametrize(
    ("change", "code", "mentions"),
    [
        ({"template": "no_such_template"}, "unknown_template", "no_such_template"),
        ({"template": "../etc/passwd"}, "unknown_template", "passwd"),
        ({"data": {"name": "Ann"}}, "missing_variable", "login_url"),
        ({"to": "not-an-address"}, "invalid_address", "to[0]"),
        ({"to": ["ok@example.com", "bad@@example.com"]}, "invalid_address", "to[1]"),
        ({"cc": ["x@example.com\r\nBcc: evil@example.com"]}, "invalid_address", "cc[0]"),
        ({"from": "nobody"}, "invalid_address", "from"),
        # A display name that would bend the header block: VT, FF, NEL, U+2028, DEL, NUL.
        ({"from": "A\u000b\u000bInjected body <a@example.com>"}, "invalid_address", "from"),
        ({"reply_to": "A\u000cB <a@example.com>"}, "invalid_address", "reply_to"),
        ({"to": ["Ann\u0085Bcc: evil@example.com <a@example.com>"]}, "invalid_address", "to[0]"),
        ({"cc": ["Ann\u2028X: y <a@example.com>"]}, "invalid_address", "cc[0]"),
        ({"to": ["Ann\u2029 <a@example.com>"]}, "invalid_address", "to[0]"),
        ({"to": ["Ann\u007f <a@example.com>"]}, "invalid_address", "to[0]"),
        ({"to": ["a\u0000@example.com"]}, "invalid_address", "to[0]"),
        ({"to": []}, "invalid_address", "at least one"),
        ({"to": [f"u{i}@example.com" for i in range(51)]}, "too_many_recipients", "50"),
        ({"locale": "../../x"}, "invalid_locale", "locale"),
        ({"provider": "resend"}, "provider_not_configured", "resend"),
        ({"provider": "smtp"}, "provider_not_configured", "smtp"),
    ],
)
async def test_bad_requests_are_422_named_and_store_nothing(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    change: dict[str, Any],
    code: str,
    mentions: str,
) -> None:
    response = await client.post(
        "/api/v1/notifications/email", json={**WELCOME, **change}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["error"] == code
    assert mentions in response.json()["detail"]
    assert await counts(db) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"template": "welcome"},
        {**WELCOME, "unexpected": 1},
        {**WELCOME, "to": 42},
        {**WELCOME, "provider": "sendgrid"},
        {**WELCOME, "tenant_id": "has spaces"},
    ],
)
async def test_malformed_bodies_are_400(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    response = await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
    assert response.status_code == 400
    assert await counts(db) == (0, 0)


async def test_idempotency_key_replays_or_conflicts(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    url = "/api/v1/notifications/email"
    key = {"Idempotency-Key": "signup-42", **AUTH}
    first = await client.post(url, json=WELCOME, headers=key)
    # Same body with keys in another order is the same request.
    reordered = {"data": WELCOME["data"], "template": "welcome", "to": "ann@example.com"}
    again = await client.post(url, json=reordered, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await counts(db) == (1, 1)

    as_list = await client.post(url, json={**WELCOME, "to": ["ann@example.com"]}, headers=key)
    assert as_list.status_code == 202
    assert as_list.json() == first.json()

    changed = await client.post(url, json={**WELCOME, "to": "bob@example.com"}, headers=key)
    assert changed.status_code == 409
    assert changed.json()["error"] == "idempotency_key_reused"
    assert await counts(db) == (1, 1)

    # The key is scoped to the tenant.
    other = await client.post(url, json={**WELCOME, "tenant_id": "acme"}, headers=key)
    assert other.status_code == 202
    assert other.json()["id"] != first.json()["id"]
    assert await counts(db) == (2, 2)


async def test_concurrent_requests_with_one_key_make_one_notification(
    settings: Settings, db: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "burst-1", **AUTH}
    async with live_api(settings) as base, httpx.AsyncClient(base_url=base) as http:
        responses = await asyncio.gather(
            *(
                http.post("/api/v1/notifications/email", json=WELCOME, headers=headers)
                for _ in range(10)
            )
        )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await counts(db) == (1, 1)


async def test_send_at_schedules_the_job(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    response = await client.post(
        "/api/v1/notifications/email", json={**WELCOME, "send_at": when.isoformat()}, headers=AUTH
    )
    assert response.status_code == 202
    scheduled = await db.fetchval("SELECT scheduled_at FROM procrastinate_jobs")
    assert abs((scheduled - when).total_seconds()) < 1


async def test_get_unknown_notification_is_404(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get(f"/api/v1/notifications/{uuid.uuid4()}", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_list_is_newest_first_with_keyset_pages_and_filters(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    ids = []
    for i in range(5):
        body = {**WELCOME, "to": f"user{i}@example.com", "tenant_id": "acme" if i % 2 else "globex"}
        ids.append(
            (await client.post("/api/v1/notifications/email", json=body, headers=AUTH)).json()["id"]
        )
    await db.execute(
        "UPDATE notifications SET status = 'failed' WHERE \"to\" = '{user4@example.com}'"
    )

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/notifications", params=params, headers=AUTH)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    async def listed(**params: str) -> list[str]:
        page = (await client.get("/api/v1/notifications", params=params, headers=AUTH)).json()
        return [item["id"] for item in page["items"]]

    assert await listed(tenant_id="acme") == [ids[3], ids[1]]
    assert await listed(status="failed") == [ids[4]]
    assert await listed(to="user2@example.com") == [ids[2]]


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"cursor": "garbage!"}, {"status": "bogus"}],
)
async def test_bad_list_parameters_are_400(
    client: AsyncTestClient[Litestar], params: dict[str, str]
) -> None:
    response = await client.get("/api/v1/notifications", params=params, headers=AUTH)
    assert response.status_code == 400


async def test_templates_list_their_variables(client: AsyncTestClient[Litestar]) -> None:
    listed = (await client.get("/api/v1/templates", headers=AUTH)).json()
    by_name = {t["name"]: t for t in listed}
    assert set(by_name) >= {
        "welcome",
        "password_reset",
        "subscription_activated",
        "payment_failed",
        "invoice_receipt",
    }
    assert by_name["welcome"]["variables"] == ["login_url", "name"]
    assert by_name["welcome"]["locales"] == ["es"]
    assert by_name["payment_failed"]["has_text_part"] is False


async def test_preview_renders_without_sending(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/api/v1/templates/welcome/preview",
        json={"data": {"name": "Ana", "login_url": "https://x.example"}, "locale": "es-MX"},
        headers=AUTH,
    )
    assert response.status_code == 200
    assert response.json()["subject"] == "¡Bienvenido, Ana!"
    assert "Iniciar sesión" in response.json()["html"]
    assert await counts(db) == (0, 0)
    missing = await client.post(
        "/api/v1/templates/welcome/preview", json={"data": {}}, headers=AUTH
    )
    assert missing.status_code == 422
    assert missing.json()["error"] == "missing_variable"
    unknown = await client.post("/api/v1/templates/nope/preview", json={"data": {}}, headers=AUTH)
    assert unknown.status_code == 422


async def test_openapi_documents_the_egress_api(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/docs/openapi.json")).json()
    for path in (
        "/api/v1/notifications/email",
        "/api/v1/notifications",
        "/api/v1/templates",
        "/api/v1/tenants/{tenant_id}/credentials/{provider}",
        "/api/v1/gateway/webhooks/resend",
        "/api/v1/gateway/webhooks/postmark",
    ):
        assert path in schema["paths"], path
    assert {"apiKey", "bearer"} <= set(schema["components"]["securitySchemes"])


async def test_dev_make_run_key_works_without_configuration(database_url: str) -> None:
    settings = make_settings(database_url, MIMIC_SERVICE_API_KEY="", MIMIC_API_KEYS="")
    async with client_for(create_app(settings)) as client:
        response = await client.get("/api/v1/templates", headers={"X-API-Key": "mimic-dev-key"})
    assert response.status_code == 200


async def test_pages_are_complete_when_rows_share_a_timestamp(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    for i in range(7):
        body = {**WELCOME, "to": f"tie{i}@example.com"}
        assert (
            await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
        ).status_code == 202
    await db.execute("UPDATE notifications SET created_at = '2026-11-26T12:00:00Z'")
    ids = [str(r["id"]) for r in await db.fetch("SELECT id FROM notifications")]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/notifications", params=params, headers=AUTH)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(ids, key=uuid.UUID, reverse=True)


async def test_an_empty_body_says_a_json_body_is_needed(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/api/v1/notifications/email",
        content=b"",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "body_required"
    assert "needs a JSON body" in response.json()["detail"]
    assert await counts(db) == (0, 0)
