"""A hostile tenant cannot stall anyone else: real `mimic api` and `mimic worker` processes.

Tenant A stores an SMTP credential at the lowest send rate, pointing at a tarpit (a server
on loopback that answers one byte every few seconds), and sends 50 messages. Meanwhile
tenant B sends 20 through the platform's provider and 20 signed Stripe events arrive. B's
mail and every inkpass call complete within the bound; A's messages wait, none failed.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import signal
import time

import asyncpg
import httpx
import pytest

from mimic.core.deps import open_deps
from mimic.core.keys import create_key
from tests.fakes import FakeHTTPServer, SmtpSink, Tarpit
from tests.helpers import (
    TEST_SECRETS,
    answers_200,
    make_settings,
    stripe_event,
    stripe_headers,
    wait_for,
)
from tests.procs import free_port, start_mimic, stop

pytestmark = pytest.mark.slow

#: B's mail and the inkpass calls must all be done this long after they were sent. Each
#: takes well under a second alone; the bound leaves room for a loaded 2-core machine.
BOUND_SECONDS = 30.0


def welcome(n: int) -> dict[str, object]:
    return {
        "to": f"user{n}@example.com",
        "template": "welcome",
        "data": {"name": f"U{n}", "login_url": "https://example.com/login"},
    }


async def test_a_tenant_at_the_lowest_rate_behind_a_tarpit_stalls_no_one(
    database_url: str, tmp_path: pathlib.Path, inkpass: FakeHTTPServer
) -> None:
    async with open_deps(make_settings(database_url)) as deps:
        _, key_a = await create_key(deps.db, "tenant-a", "hostile", by="test")
        _, key_b = await create_key(deps.db, "tenant-b", "victim", by="test")
    api_port = free_port()
    with SmtpSink() as platform_smtp:
        async with Tarpit(every=2) as pit:
            tarpit_port = pit.port
            env = {
                **TEST_SECRETS,
                "MIMIC_ENV": "dev",
                "DATABASE_URL": database_url,
                "INKPASS_INTERNAL_URL": inkpass.url,
                "MIMIC_PORT": str(api_port),
                "MIMIC_LOG_LEVEL": "WARNING",
                "EMAIL_PROVIDER": "dev",
                "DEV_SMTP_HOST": "127.0.0.1",
                "DEV_SMTP_PORT": str(platform_smtp.port),
                "SMTP_ALLOWED_HOSTS": f"127.0.0.1:{tarpit_port}",
                "SMTP_SEND_DEADLINE_SECONDS": "3",
                "WORKER_HEALTH_PORT": str(free_port()),
                "WORKER_POLL_SECONDS": "0.2",
                # A sends its 50 at once, past the default per-key burst (40): here it is the
                # workers it attacks (the API's own limit: tests/integration/core/
                # test_rate_limits.py).
                "API_BURST": "100",
            }
            api = start_mimic("api", env, log=tmp_path / "api.log")
            worker = start_mimic("worker", env, log=tmp_path / "worker.log")
            try:
                base = f"http://127.0.0.1:{api_port}"
                await wait_for(functools.partial(answers_200, f"{base}/readyz"), within=60)
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    await _play(http, key_a, key_b, tarpit_port)
                    started = time.monotonic()
                    await _attack_and_work(http, key_a, key_b)
                    await _b_and_inkpass_done(
                        database_url, inkpass, platform_smtp, started + BOUND_SECONDS
                    )
                await _a_waits_and_never_failed(database_url)
                assert pit.connections, "tenant A's sends never reached its server"
            finally:
                for proc in (api, worker):
                    await asyncio.to_thread(stop, proc, signal.SIGTERM)


async def _play(http: httpx.AsyncClient, key_a: str, key_b: str, tarpit_port: int) -> None:
    """A stores its credential; a rate under the floor is refused first."""
    smtp = {"host": "127.0.0.1", "port": tarpit_port, "security": "none"}
    url = "/api/v1/tenants/tenant-a/credentials/smtp"
    body = {"from_email": "mail@a.example", "smtp": smtp, "rate_per_second": 1e-6}
    refused = await http.put(url, json=body, headers={"X-API-Key": key_a})
    assert refused.status_code == 400, refused.text
    assert "rate_per_second" in refused.text
    body["rate_per_second"] = 0.1
    stored = await http.put(url, json=body, headers={"X-API-Key": key_a})
    assert stored.status_code == 200, stored.text


async def _attack_and_work(http: httpx.AsyncClient, key_a: str, key_b: str) -> None:
    async def send(key: str, n: int, **extra: str) -> None:
        response = await http.post(
            "/api/v1/notifications/email", json={**welcome(n), **extra}, headers={"X-API-Key": key}
        )
        assert response.status_code == 202, response.text

    # A sends from its credential's domain (the sender rule lets it); B has no credential
    # and sends through the platform (in dev a tenant without settings may).
    await asyncio.gather(*(send(key_a, n, **{"from": "A <news@a.example>"}) for n in range(50)))
    events = [stripe_event("invoice.paid") for _ in range(20)]

    async def webhook(body: bytes) -> None:
        response = await http.post(
            "/api/v1/gateway/webhooks/stripe", content=body, headers=stripe_headers(body)
        )
        assert response.status_code == 200, response.text

    await asyncio.gather(
        *(send(key_b, 100 + n) for n in range(20)), *(webhook(body) for body in events)
    )


async def _b_and_inkpass_done(
    database_url: str, inkpass: FakeHTTPServer, platform_smtp: SmtpSink, deadline: float
) -> None:
    conn = await asyncpg.connect(database_url)
    try:

        async def done() -> bool:
            sent_b = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE tenant_id = 'tenant-b' "
                "AND status = 'sent'"
            )
            delivered = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'success'"
            )
            return bool(sent_b == 20 and delivered == 20)

        await wait_for(done, within=max(1.0, deadline - time.monotonic()))
    finally:
        await conn.close()
    assert len(platform_smtp.messages) == 20
    assert len({r.json()["delivery_id"] for r in inkpass.requests}) == 20


async def _a_waits_and_never_failed(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM notifications WHERE tenant_id = 'tenant-a' "
            "GROUP BY status"
        )
        waiting = await conn.fetchval(
            "SELECT count(DISTINCT notification_id) FROM notification_events e "
            "JOIN notifications n ON n.id = e.notification_id "
            "WHERE n.tenant_id = 'tenant-a' AND e.status = 'waiting'"
        )
    finally:
        await conn.close()
    statuses = {row["status"]: row["n"] for row in rows}
    assert sum(statuses.values()) == 50
    assert set(statuses) <= {"queued", "sending"}, statuses  # none sent, none failed
    assert waiting > 0  # sends went back to the queue for their turn, not to sleep in a slot
