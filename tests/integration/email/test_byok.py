"""Bring your own keys: sealed at rest, never shown or logged, used per tenant, rotatable."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, SmtpSink, resend_responder
from tests.helpers import (
    TEST_SECRETS,
    client_for,
    dev_mail_settings,
    make_settings,
    running_worker,
    wait_for,
    wait_for_value,
)

AUTH = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}
ACME_KEY = "re_acme_secret_key_AAAA1111"
GLOBEX_KEY = "re_globex_secret_key_BBBB2222"
SMTP_PASSWORD = "smtp-pass-CCCC3333"
NEW_KEY = "k2:" + "bmV3LWtleS1uZXctbmV3LWtleS1uZXctbmV3LWtleSE="


def welcome_for(tenant: str) -> dict[str, object]:
    return {
        "to": "a@example.com",
        "template": "welcome",
        "tenant_id": tenant,
        "data": {"name": "A", "login_url": "u"},
    }


def url(tenant: str, provider: str = "resend") -> str:
    return f"/api/v1/tenants/{tenant}/credentials/{provider}"


@pytest.fixture
def resend() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(resend_responder()) as server:
        yield server


@pytest.fixture
def settings(database_url: str, resend: FakeHTTPServer) -> Settings:
    return make_settings(
        database_url, EMAIL_PROVIDER="dev", RESEND_API_URL=resend.url, DEV_SMTP_PORT="9"
    )


async def everything_stored(db: asyncpg.Connection) -> str:
    """Every row of every table, as text (bytea as hex and as raw bytes)."""
    tables = await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    dump = []
    for table in tables:
        rows = await db.fetch(f'SELECT row_to_json(t)::text AS j FROM "{table["tablename"]}" t')
        dump += [row["j"] for row in rows]
    for row in await db.fetch("SELECT ciphertext, nonce FROM provider_credentials"):
        dump.append(bytes(row["ciphertext"]).decode("latin-1"))
    return "\n".join(dump)


async def test_put_get_delete_show_only_last4(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        put = await client.put(
            url("acme"),
            json={"api_key": ACME_KEY, "from_email": "Acme <billing@acme.example>"},
            headers=AUTH,
        )
        got = await client.get(url("acme"), headers=AUTH)
    assert put.status_code == 200
    shown = put.json()
    assert shown["last4"] == "1111"
    assert shown["provider"] == "resend"
    assert shown["from_email"] == "Acme <billing@acme.example>"
    assert set(shown) == {
        "tenant_id",
        "provider",
        "from_email",
        "last4",
        "rate_per_second",
        "priority",
        "created_at",
        "updated_at",
    }
    assert got.json() == shown
    for text in (put.text, got.text, caplog.text, await everything_stored(db)):
        assert ACME_KEY not in text
        assert ACME_KEY[3:-4] not in text
    row = await db.fetchrow("SELECT key_id, nonce FROM provider_credentials")
    assert row is not None
    assert row["key_id"] == "k1"
    assert len(row["nonce"]) == 12

    assert (await client.delete(url("acme"), headers=AUTH)).status_code == 204
    gone = await client.get(url("acme"), headers=AUTH)
    assert gone.status_code == 404
    assert (await client.delete(url("acme"), headers=AUTH)).status_code == 404


async def test_smtp_credential_hides_the_password(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    body = {
        "from_email": "mail@acme.example",
        "smtp": {
            "host": "smtp.acme.example",
            "port": 465,
            "username": "acme",
            "password": SMTP_PASSWORD,
            "security": "tls",
        },
    }
    response = await client.put(url("acme", "smtp"), json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["last4"] == "3333"
    assert SMTP_PASSWORD not in response.text
    assert SMTP_PASSWORD not in await everything_stored(db)

    # A short password is not shown at all: its last 4 would be most of it.
    body["smtp"]["password"] = "pw12"  # type: ignore[index]
    short = await client.put(url("acme", "smtp"), json=body, headers=AUTH)
    assert short.json()["last4"] == ""
    assert "pw12" not in await everything_stored(db)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (url("acme"), {"from_email": "a@acme.example"}, 400),
        (url("acme"), {"api_key": "short", "from_email": "a@acme.example"}, 400),
        (url("acme"), {"api_key": "re_key_with\nnewline1234", "from_email": "a@acme.example"}, 400),
        (url("acme"), {"api_key": "re_key with space1", "from_email": "a@acme.example"}, 400),
        (url("acme"), {"api_key": ACME_KEY, "from_email": "nope"}, 422),
        (url("acme"), {"api_key": ACME_KEY}, 400),
        (url("acme", "smtp"), {"api_key": ACME_KEY, "from_email": "a@acme.example"}, 400),
        (url("acme", "sendgrid"), {"api_key": ACME_KEY, "from_email": "a@acme.example"}, 400),
        (url("bad tenant"), {"api_key": ACME_KEY, "from_email": "a@acme.example"}, 400),
    ],
)
async def test_bad_credentials_are_refused_and_not_stored(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    path: str,
    body: dict[str, str],
    status: int,
) -> None:
    response = await client.put(path, json=body, headers=AUTH)
    assert response.status_code == status
    assert ACME_KEY not in response.text
    assert await db.fetchval("SELECT count(*) FROM provider_credentials") == 0


async def test_without_encryption_keys_nothing_is_stored(
    database_url: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, MIMIC_ENCRYPTION_KEYS="")
    async with client_for(create_app(settings)) as client:
        response = await client.put(
            url("acme"), json={"api_key": ACME_KEY, "from_email": "a@acme.example"}, headers=AUTH
        )
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"
    assert await db.fetchval("SELECT count(*) FROM provider_credentials") == 0


async def test_two_tenants_sending_at_once_each_use_their_own_key(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for tenant, key in (("acme", ACME_KEY), ("globex", GLOBEX_KEY)):
        body = {"api_key": key, "from_email": f"billing@{tenant}.example"}
        assert (await client.put(url(tenant), json=body, headers=AUTH)).status_code == 200

    async def send(tenant: str, i: int) -> str:
        body = {
            "to": f"user{i}@example.com",
            "template": "welcome",
            "tenant_id": tenant,
            "data": {"name": "U", "login_url": "https://x.example"},
        }
        response = await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    with caplog.at_level(logging.DEBUG):
        ids = await asyncio.gather(*(send(t, i) for i in range(10) for t in ("acme", "globex")))
        async with running_worker(settings):

            async def all_sent() -> bool:
                sent = await db.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'")
                return bool(sent == len(ids))

            await wait_for(all_sent, within=20)
    rows = await db.fetch('SELECT id, tenant_id, "from", provider FROM notifications')
    tenant_of = {str(r["id"]): r["tenant_id"] for r in rows}
    assert {r["provider"] for r in rows} == {"resend"}  # the tenant's credential picks it
    assert {r["from"] for r in rows if r["tenant_id"] == "acme"} == {"billing@acme.example"}
    assert len(resend.requests) == 20
    for request in resend.requests:
        tenant = tenant_of[request.headers["idempotency-key"]]
        expected = ACME_KEY if tenant == "acme" else GLOBEX_KEY
        assert request.headers["authorization"] == f"Bearer {expected}"
        assert request.json()["from"] == f"billing@{tenant}.example"
    assert ACME_KEY not in caplog.text
    assert GLOBEX_KEY not in caplog.text


async def test_tenant_without_credential_uses_the_platform(
    database_url: str, db: asyncpg.Connection
) -> None:
    with SmtpSink() as smtp:
        settings = dev_mail_settings(database_url, smtp.port)
        async with client_for(create_app(settings)) as client, running_worker(settings):
            body = welcome_for("initech")
            assert (
                await client.post("/api/v1/notifications/email", json=body, headers=AUTH)
            ).status_code == 202

            async def sent() -> bool:
                return len(smtp.messages) == 1

            await wait_for(sent)
    assert await db.fetchval('SELECT "from" FROM notifications') == "Mimic <no-reply@mimic.local>"


async def test_tampered_ciphertext_is_refused(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"api_key": ACME_KEY, "from_email": "billing@acme.example"}
    assert (await client.put(url("acme"), json=body, headers=AUTH)).status_code == 200
    await db.execute(
        "UPDATE provider_credentials"
        " SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1)"
    )
    send = welcome_for("acme")
    nid = (await client.post("/api/v1/notifications/email", json=send, headers=AUTH)).json()["id"]
    with caplog.at_level(logging.DEBUG):
        async with running_worker(settings):
            await wait_for_value(
                db, "SELECT status FROM notifications", until=lambda v: v == "failed"
            )
    error = await db.fetchval("SELECT error FROM notifications WHERE id = $1", uuid.UUID(nid))
    assert "could not be decrypted" in error
    assert resend.requests == []
    assert ACME_KEY not in caplog.text


async def test_ciphertext_moved_to_another_tenant_is_refused(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    for tenant, key in (("acme", ACME_KEY), ("globex", GLOBEX_KEY)):
        body = {"api_key": key, "from_email": f"billing@{tenant}.example"}
        await client.put(url(tenant), json=body, headers=AUTH)
    await db.execute(
        """UPDATE provider_credentials g SET ciphertext = a.ciphertext, nonce = a.nonce
             FROM provider_credentials a WHERE g.tenant_id = 'globex' AND a.tenant_id = 'acme'"""
    )
    send = welcome_for("globex")
    await client.post("/api/v1/notifications/email", json=send, headers=AUTH)
    async with running_worker(settings):
        await wait_for_value(db, "SELECT status FROM notifications", until=lambda v: v == "failed")
    assert resend.requests == []


async def test_rotate_keys_reseals_under_the_new_key(
    client: AsyncTestClient[Litestar],
    database_url: str,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    body = {"api_key": ACME_KEY, "from_email": "billing@acme.example"}
    await client.put(url("acme"), json=body, headers=AUTH)
    before = await db.fetchrow("SELECT key_id, ciphertext, updated_at FROM provider_credentials")
    assert before is not None
    keys = f"{NEW_KEY},{TEST_SECRETS['MIMIC_ENCRYPTION_KEYS']}"
    env = {
        **os.environ,
        **TEST_SECRETS,
        "DATABASE_URL": database_url,
        "MIMIC_ENCRYPTION_KEYS": keys,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mimic", "rotate-keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 credential(s) with key 'k2'" in done.stdout
    assert ACME_KEY not in done.stdout + done.stderr
    after = await db.fetchrow("SELECT key_id, ciphertext, updated_at FROM provider_credentials")
    assert after is not None
    assert after["key_id"] == "k2"
    assert after["ciphertext"] != before["ciphertext"]
    # Rotation is ours, not the tenant's: it must not change which credential is "latest".
    assert after["updated_at"] == before["updated_at"]

    # Only the new key is needed now: the old one can be retired.
    settings = make_settings(
        database_url, MIMIC_ENCRYPTION_KEYS=NEW_KEY, RESEND_API_URL=resend.url, DEV_SMTP_PORT="9"
    )
    async with client_for(create_app(settings)) as new_client, running_worker(settings):
        send = welcome_for("acme")
        await new_client.post("/api/v1/notifications/email", json=send, headers=AUTH)
        await resend.wait_for_requests(1)
    assert resend.requests[0].headers["authorization"] == f"Bearer {ACME_KEY}"


async def test_tenant_smtp_credential_logs_in_to_the_tenants_server(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    with SmtpSink(login=("acme", SMTP_PASSWORD)) as server:
        # A loopback server on a test port: allowed explicitly (see test_ssrf.py).
        settings = make_settings(database_url, SMTP_ALLOWED_HOSTS=f"127.0.0.1:{server.port}")
        body = {
            "from_email": "mail@acme.example",
            "smtp": {
                "host": "127.0.0.1",
                "port": server.port,
                "username": "acme",
                "password": SMTP_PASSWORD,
                "security": "none",
            },
        }
        assert (await client.put(url("acme", "smtp"), json=body, headers=AUTH)).status_code == 200
        send = welcome_for("acme")
        assert (
            await client.post("/api/v1/notifications/email", json=send, headers=AUTH)
        ).status_code == 202
        async with running_worker(settings):
            await wait_for_value(
                db, "SELECT status FROM notifications", until=lambda v: v == "sent"
            )
    assert server.logins == ["acme"]
    assert server.messages[0]["From"] == "mail@acme.example"
    assert await db.fetchval("SELECT provider FROM notifications") == "smtp"


async def test_tenant_postmark_token_is_used(
    client: AsyncTestClient[Litestar], database_url: str, db: asyncpg.Connection
) -> None:
    from tests.fakes import postmark_responder

    token = "pm-tenant-token-DDDD4444"
    with FakeHTTPServer(postmark_responder()) as postmark:
        settings = make_settings(database_url, POSTMARK_API_URL=postmark.url)
        body = {"api_key": token, "from_email": "billing@acme.example"}
        assert (
            await client.put(url("acme", "postmark"), json=body, headers=AUTH)
        ).status_code == 200
        send = welcome_for("acme")
        await client.post("/api/v1/notifications/email", json=send, headers=AUTH)
        async with running_worker(settings):
            await postmark.wait_for_requests(1)
    assert postmark.requests[0].headers["x-postmark-server-token"] == token
