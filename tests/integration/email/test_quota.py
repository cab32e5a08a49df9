"""A tenant's daily send quota: what an admin allows it per UTC day, counted in Postgres so
that every API process keeps it together. Played as the hostile tenant, with the real app."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.core.settings import Settings
from tests.helpers import ADMIN, live_api, new_key

SEND = "/api/v1/notifications/email"
BATCH = "/api/v1/notifications/email/batch"


def welcome(to: str = "a@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "to": to,
        "template": "welcome",
        "data": {"name": "A", "login_url": "https://example.com/login"},
        **extra,
    }


def batch(size: int, prefix: str = "u") -> dict[str, Any]:
    return {"messages": [welcome(f"{prefix}{i}@example.com") for i in range(size)]}


async def set_quota(client: AsyncTestClient[Litestar], tenant: str, quota: int | None) -> None:
    body = {"sender_domains": [], "platform_fallback": True, "daily_send_quota": quota}
    response = await client.put(f"/api/v1/tenants/{tenant}/settings", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["daily_send_quota"] == quota


@pytest.fixture
async def acme(settings: Settings) -> dict[str, str]:
    return {"X-API-Key": await new_key(settings, "acme")}


async def stored(db: asyncpg.Connection, tenant: str = "acme") -> int:
    return int(await db.fetchval("SELECT count(*) FROM notifications WHERE tenant_id = $1", tenant))


def seconds_to_utc_midnight() -> float:
    now = datetime.datetime.now(datetime.UTC)
    midnight = datetime.datetime.combine(
        now.date() + datetime.timedelta(days=1), datetime.time(), datetime.UTC
    )
    return (midnight - now).total_seconds()


def assert_quota_exceeded(response: httpx.Response, *, quota: int, used: int) -> None:
    assert response.status_code == 429, response.text
    assert set(response.json()) == {"error", "detail"}
    assert response.json()["error"] == "quota_exceeded"
    detail = response.json()["detail"]
    assert f"may have {quota} emails accepted per UTC day" in detail, detail
    assert f"has had {used} today" in detail, detail
    assert "nothing was stored" in detail
    assert "00:00 UTC" in detail
    assert "PUT /api/v1/tenants/acme/settings" in detail
    retry_after = int(response.headers["Retry-After"])
    assert abs(retry_after - seconds_to_utc_midnight()) < 30, retry_after


async def test_the_send_that_would_exceed_the_quota_is_refused_and_stores_nothing(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await set_quota(client, "acme", 3)
    for i in range(2):
        assert (await client.post(SEND, json=welcome(f"a{i}@example.com"), headers=acme)).is_success
    # An admin key sending for the tenant spends the tenant's quota too: it is its mail.
    admin = await client.post(SEND, json=welcome(tenant_id="acme"), headers=ADMIN)
    assert admin.status_code == 202
    jobs = await db.fetchval("SELECT count(*) FROM procrastinate_jobs")

    refused = await client.post(SEND, json=welcome("over@example.com"), headers=acme)
    assert_quota_exceeded(refused, quota=3, used=3)
    assert "this email would exceed it" in refused.json()["detail"]
    assert_quota_exceeded(
        await client.post(SEND, json=welcome(tenant_id="acme"), headers=ADMIN), quota=3, used=3
    )
    assert await stored(db) == 3
    assert await db.fetchval("SELECT count(*) FROM procrastinate_jobs") == jobs
    # Other tenants and the platform are not affected.
    assert (await client.post(SEND, json=welcome(tenant_id="globex"), headers=ADMIN)).is_success
    assert (await client.post(SEND, json=welcome(), headers=ADMIN)).is_success


async def test_a_batch_counts_its_messages_all_or_nothing(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await set_quota(client, "acme", 5)
    assert (await client.post(BATCH, json=batch(3), headers=acme)).status_code == 202
    refused = await client.post(BATCH, json=batch(3, "v"), headers=acme)
    assert_quota_exceeded(refused, quota=5, used=3)
    assert "these 3 emails would exceed it" in refused.json()["detail"]
    assert await stored(db) == 3
    assert (await client.post(BATCH, json=batch(2, "w"), headers=acme)).status_code == 202
    assert await stored(db) == 5
    assert_quota_exceeded(await client.post(SEND, json=welcome(), headers=acme), quota=5, used=5)


async def test_replays_count_nothing_and_a_send_not_stored_gives_its_count_back(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await set_quota(client, "acme", 2)
    keyed = {**acme, "Idempotency-Key": "signup-1"}
    first = await client.post(SEND, json=welcome(), headers=keyed)
    assert first.status_code == 202
    # Postgres refuses this one (a NUL in a tag) after it was counted: the count comes back.
    refused = await client.post(SEND, json=welcome(tags={"t": "a\u0000b"}), headers=acme)
    assert refused.status_code == 400, refused.text
    assert (await client.post(SEND, json=welcome("b@example.com"), headers=acme)).is_success
    assert await stored(db) == 2
    # The quota is spent, and a retry of an accepted send still answers as the first time.
    again = await client.post(SEND, json=welcome(), headers=keyed)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    replayed = await client.post(
        BATCH, json={"messages": [welcome(idempotency_key="signup-1")]}, headers=acme
    )
    assert replayed.status_code == 202
    assert replayed.json()["results"][0]["replayed"] is True
    assert await db.fetchval("SELECT sends FROM tenant_daily_sends WHERE tenant_id = 'acme'") == 2


async def test_the_quota_starts_over_on_a_new_utc_day(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await set_quota(client, "acme", 2)
    assert (await client.post(BATCH, json=batch(2), headers=acme)).status_code == 202
    assert (await client.post(SEND, json=welcome(), headers=acme)).status_code == 429
    # Midnight UTC passes: today's count becomes yesterday's.
    await db.execute("UPDATE tenant_daily_sends SET day = day - 1 WHERE tenant_id = 'acme'")
    assert (await client.post(BATCH, json=batch(2, "v"), headers=acme)).status_code == 202
    assert (await client.post(SEND, json=welcome(), headers=acme)).status_code == 429
    days = await db.fetch("SELECT day, sends FROM tenant_daily_sends ORDER BY day")
    assert [r["sends"] for r in days] == [2, 2]
    assert days[1]["day"] - days[0]["day"] == datetime.timedelta(days=1)


async def test_no_quota_by_default_and_nothing_counted(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    for _ in range(3):
        assert (await client.post(BATCH, json=batch(100), headers=acme)).status_code == 202
    assert (await client.post(SEND, json=welcome(), headers=acme)).status_code == 202
    shown = await client.get("/api/v1/tenants/acme/settings", headers=ADMIN)
    assert shown.json()["daily_send_quota"] is None
    assert await stored(db) == 301
    assert await db.fetchval("SELECT count(*) FROM tenant_daily_sends") == 0


async def test_a_quota_set_during_the_day_counts_the_mail_already_accepted(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    assert (await client.post(BATCH, json=batch(3), headers=acme)).status_code == 202
    await set_quota(client, "acme", 4)
    assert (await client.post(SEND, json=welcome(), headers=acme)).status_code == 202
    assert_quota_exceeded(await client.post(SEND, json=welcome(), headers=acme), quota=4, used=4)
    # Taken away, then set again: what was sent meanwhile counts too.
    await set_quota(client, "acme", None)
    assert (await client.post(SEND, json=welcome(), headers=acme)).status_code == 202
    await set_quota(client, "acme", 6)
    assert (await client.post(SEND, json=welcome(), headers=acme)).status_code == 202
    assert_quota_exceeded(await client.post(SEND, json=welcome(), headers=acme), quota=6, used=6)
    bad = await client.put(
        "/api/v1/tenants/acme/settings",
        json={"sender_domains": [], "platform_fallback": True, "daily_send_quota": -1},
        headers=ADMIN,
    )
    assert bad.status_code == 400
    assert "daily_send_quota" in bad.json()["detail"]


async def test_concurrent_sends_through_two_api_processes_never_pass_the_quota(
    settings: Settings, acme: dict[str, str], db: asyncpg.Connection
) -> None:
    """Two real servers (two ``create_app`` on one database) take 24 sends at once."""
    async with (
        live_api(settings) as one,
        live_api(settings) as two,
        httpx.AsyncClient(timeout=30) as http,
    ):
        body = {"sender_domains": [], "platform_fallback": True, "daily_send_quota": 10}
        put = await http.put(f"{one}/api/v1/tenants/acme/settings", json=body, headers=ADMIN)
        assert put.status_code == 200

        async def send(url: str, i: int) -> int:
            response = await http.post(
                f"{url}{SEND}", json=welcome(f"s{i}@example.com"), headers=acme
            )
            return response.status_code

        codes = await asyncio.gather(*(send(one if i % 2 else two, i) for i in range(24)))
    assert sorted(codes) == [202] * 10 + [429] * 14
    assert await stored(db) == 10
    assert await db.fetchval("SELECT sends FROM tenant_daily_sends") == 10
