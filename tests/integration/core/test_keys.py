"""Key scopes: admin keys act for every tenant; a tenant key only for its own tenant."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.deps import open_deps
from mimic.core.keys import revoke_key
from mimic.core.settings import Settings
from tests.helpers import ADMIN, TEST_SECRETS, new_key


def welcome(tenant: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "to": "a@example.com",
        "template": "welcome",
        "data": {"name": "A", "login_url": "https://example.com/login"},
    }
    if tenant is not None:
        body["tenant_id"] = tenant
    return body


@pytest.fixture
async def acme(settings: Settings) -> dict[str, str]:
    return {"X-API-Key": await new_key(settings, "acme")}


@pytest.fixture
async def sent(client: AsyncTestClient[Litestar]) -> dict[str | None, str]:
    """One notification each for acme, globex and the platform, sent with the admin key."""
    ids: dict[str | None, str] = {}
    for tenant in ("acme", "globex", None):
        response = await client.post(
            "/api/v1/notifications/email", json=welcome(tenant), headers=ADMIN
        )
        assert response.status_code == 202, response.text
        ids[tenant] = response.json()["id"]
    return ids


async def test_a_tenant_key_lists_and_reads_only_its_tenant(
    client: AsyncTestClient[Litestar], acme: dict[str, str], sent: dict[str | None, str]
) -> None:
    listed = await client.get("/api/v1/notifications", headers=acme)
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()["items"]] == [sent["acme"]]
    everyone = await client.get("/api/v1/notifications", headers=ADMIN)
    assert len(everyone.json()["items"]) == 3

    assert (await client.get(f"/api/v1/notifications/{sent['acme']}", headers=acme)).is_success
    for other in (sent["globex"], sent[None]):
        response = await client.get(f"/api/v1/notifications/{other}", headers=acme)
        assert response.status_code == 404  # not 403: existence is not disclosed

    mismatch = await client.get("/api/v1/notifications?tenant_id=globex", headers=acme)
    assert mismatch.status_code == 403
    assert mismatch.json()["error"] == "tenant_mismatch"


async def test_a_tenant_key_sends_as_its_tenant_only(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    implicit = await client.post("/api/v1/notifications/email", json=welcome(), headers=acme)
    assert implicit.status_code == 202
    explicit = await client.post("/api/v1/notifications/email", json=welcome("acme"), headers=acme)
    assert explicit.status_code == 202
    other = await client.post("/api/v1/notifications/email", json=welcome("globex"), headers=acme)
    assert other.status_code == 403
    tenants = await db.fetch("SELECT tenant_id FROM notifications")
    assert [r["tenant_id"] for r in tenants] == ["acme", "acme"]


async def test_a_tenant_key_manages_only_its_own_credentials(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    body = {"api_key": "re_acme_0123456789", "from_email": "acme@example.com"}
    own = await client.put("/api/v1/tenants/acme/credentials/resend", json=body, headers=acme)
    assert own.status_code == 200, own.text
    for method in ("PUT", "GET", "DELETE"):
        response = await client.request(
            method,
            "/api/v1/tenants/globex/credentials/resend",
            json=body if method == "PUT" else None,
            headers=acme,
        )
        assert response.status_code == 403, method
    assert await db.fetchval("SELECT count(*) FROM provider_credentials") == 1
    audit = await db.fetch("SELECT key_id, action, outcome FROM audit_log ORDER BY id")
    assert (audit[0]["key_id"], audit[0]["action"]) == ("test", "create_key")
    assert acme["X-API-Key"] not in str([dict(r) for r in audit])
    assert {r["key_id"] for r in audit[1:]} == {audit[1]["key_id"]}
    assert audit[1]["key_id"].startswith("key_")
    assert [(r["action"], r["outcome"]) for r in audit[1:]] == [
        ("put_credential", "ok"),
        ("put_credential", "tenant_mismatch"),
        ("read_credential", "tenant_mismatch"),
        ("delete_credential", "tenant_mismatch"),
    ]


async def test_only_admin_keys_reach_the_events_api(
    client: AsyncTestClient[Litestar], acme: dict[str, str]
) -> None:
    events = "/api/v1/gateway/webhooks/events"
    assert (await client.get(events, headers=ADMIN)).status_code == 200
    refused = await client.get(events, headers=acme)
    assert refused.status_code == 403
    assert refused.json()["error"] == "admin_key_required"
    assert (await client.get(events)).status_code == 401


async def test_the_service_key_is_refused_inbound(client: AsyncTestClient[Litestar]) -> None:
    service = {"X-API-Key": TEST_SECRETS["MIMIC_SERVICE_API_KEY"]}
    assert (await client.get("/api/v1/templates", headers=service)).status_code == 401
    assert (await client.get("/api/v1/gateway/webhooks/events", headers=service)).status_code == 401


async def test_a_revoked_key_is_refused_at_once_and_only_a_hash_is_stored(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = await new_key(settings, "acme")
    headers = {"X-API-Key": key}
    assert (await client.get("/api/v1/templates", headers=headers)).status_code == 200
    assert (
        await client.get("/api/v1/templates", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 200
    row = await db.fetchrow("SELECT * FROM api_keys")
    assert row is not None
    assert key not in str(dict(row))
    with caplog.at_level(logging.DEBUG):
        async with open_deps(settings) as deps:
            await revoke_key(deps.db, row["id"], by="test")
        assert (await client.get("/api/v1/templates", headers=headers)).status_code == 401
    assert key not in caplog.text
    # A near miss (right prefix, wrong key) is refused the same way.
    wrong = {"X-API-Key": key[:-2] + "xx"}
    assert (await client.get("/api/v1/templates", headers=wrong)).status_code == 401
