"""A request rate per API key, shared by every API process: played as the hostile tenant
that hammers the API, against the real app on real Postgres."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.keys import key_id
from mimic.core.settings import Settings
from tests.helpers import (
    ADMIN,
    TEST_SECRETS,
    client_for,
    live_api,
    make_settings,
    new_key,
    stripe_event,
    stripe_headers,
)

LIST = "/api/v1/notifications"
SEND = "/api/v1/notifications/email"
WELCOME = {
    "to": "a@example.com",
    "template": "welcome",
    "data": {"name": "A", "login_url": "https://example.com/login"},
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Tenant keys: bursts of 5, then one request per 10 s (so no token comes back while a
    test runs)."""
    return make_settings(database_url, API_RATE_PER_SECOND="0.1", API_BURST="5")


async def hammer(
    client: AsyncTestClient[Litestar], key: dict[str, str], times: int
) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.get(LIST, headers=key) for _ in range(times))))


def assert_rate_limited(response: httpx.Response, key: str) -> None:
    assert response.status_code == 429, response.text
    assert set(response.json()) == {"error", "detail"}
    assert response.json()["error"] == "rate_limited"
    detail = response.json()["detail"]
    assert "0.1 requests per second (bursts of 5" in detail, detail
    assert "Retry-After" in detail
    assert key_id(key) in detail
    assert key not in detail
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 10, retry_after
    assert f"retry in {retry_after} s" in detail


async def test_a_hammering_tenant_key_gets_429_after_its_burst_and_no_one_else_does(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    acme = {"X-API-Key": await new_key(settings, "acme")}
    globex = {"X-API-Key": await new_key(settings, "globex")}
    hostile, other = await asyncio.gather(hammer(client, acme, 20), hammer(client, globex, 5))
    assert sorted(r.status_code for r in hostile) == [200] * 5 + [429] * 15
    for response in hostile:
        if response.status_code == 429:
            assert_rate_limited(response, acme["X-API-Key"])
    assert [r.status_code for r in other] == [200] * 5  # the same moment, another tenant
    # Every route that takes a key has the limit: a send is refused, and stores nothing.
    refused = await client.post(SEND, json=WELCOME, headers=acme)
    assert_rate_limited(refused, acme["X-API-Key"])
    assert await db.fetchval("SELECT count(*) FROM notifications") == 0
    # What has no key has no limit: admins, probes, provider webhooks.
    assert (await client.get(LIST, headers=ADMIN)).status_code == 200
    assert (await client.get("/healthz")).status_code == 200
    body = stripe_event(id="evt_during_hammering")
    webhook = await client.post(
        "/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
    )
    assert webhook.status_code == 200
    # The bucket is named by the key's id, never by the key.
    buckets = [r["key"] for r in await db.fetch("SELECT key FROM send_rate_buckets")]
    assert f"api:{key_id(acme['X-API-Key'])}" in buckets
    assert not any(acme["X-API-Key"] in b or TEST_SECRETS["MIMIC_API_KEYS"] in b for b in buckets)


async def test_the_limit_holds_across_two_api_processes(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Two real servers (two ``create_app`` on one database), hammered at once."""
    acme = {"X-API-Key": await new_key(settings, "acme")}
    async with (
        live_api(settings) as one,
        live_api(settings) as two,
        httpx.AsyncClient(timeout=30) as http,
    ):
        answers = await asyncio.gather(
            *(http.get(f"{url}{LIST}", headers=acme) for url in (one, two) for _ in range(8))
        )
    codes = [r.status_code for r in answers]
    # One bucket for both: a bucket per process would let 5 through each.
    assert codes.count(200) == 5, codes
    assert codes.count(429) == 11, codes


async def test_a_refused_request_costs_nothing_so_hammering_never_locks_a_key_out(
    database_url: str,
) -> None:
    """A refused request takes no token: a client that keeps hammering is let in again as
    soon as a token refills (were refusals counted, it would dig itself a hole it could not
    leave while it kept trying), and never faster than the rate."""
    settings = make_settings(database_url, API_RATE_PER_SECOND="5", API_BURST="1")
    acme = {"X-API-Key": await new_key(settings, "acme")}
    async with client_for(create_app(settings)) as client:
        started = time.monotonic()
        accepted = 0
        refused = 0
        while time.monotonic() - started < 1.5:
            response = await client.get(LIST, headers=acme)
            if response.status_code == 200:
                accepted += 1
            else:
                assert response.status_code == 429
                assert response.headers["Retry-After"] == "1"  # 0.2 s, rounded up
                refused += 1
        elapsed = time.monotonic() - started
    assert refused > 20, "the test did not hammer"
    # One at once, then one per 0.2 s: never more, and (refusals costing nothing) not
    # many fewer either.
    assert accepted <= 1 + elapsed * 5 + 1, (accepted, elapsed)
    assert accepted >= elapsed * 5 - 2, (accepted, elapsed)


async def test_admin_keys_have_their_own_limit_or_none(database_url: str) -> None:
    limited = make_settings(database_url, API_ADMIN_RATE_PER_SECOND="0.1", API_ADMIN_BURST="2")
    async with client_for(create_app(limited)) as client:
        codes = [(await client.get(LIST, headers=ADMIN)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = await client.get(LIST, headers=ADMIN)
        assert refused.json()["error"] == "rate_limited"
        assert "API_ADMIN_RATE_PER_SECOND" in refused.json()["detail"]
        assert TEST_SECRETS["MIMIC_API_KEYS"] not in refused.text

    unlimited = make_settings(database_url, API_ADMIN_RATE_PER_SECOND="0", API_ADMIN_BURST="1")
    async with client_for(create_app(unlimited)) as client:
        for _ in range(30):
            assert (await client.get("/api/v1/templates", headers=ADMIN)).status_code == 200
