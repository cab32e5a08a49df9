"""Real `mimic worker` processes: SIGKILL mid-delivery is recovered; SIGTERM drains."""

from __future__ import annotations

import asyncio
import signal
import uuid

import asyncpg
import httpx
import pytest

from mimic.app import create_app, router
from mimic.events.ingest import committer
from tests.fakes import FakeHTTPServer, Reply
from tests.helpers import (
    TEST_SECRETS,
    answers_200,
    client_for,
    commit_held,
    insert_waits,
    live_api,
    make_settings,
    stripe_event,
    stripe_headers,
    wait_for,
)
from tests.procs import free_port, kill, start_mimic, stop

pytestmark = pytest.mark.slow

URL = "/api/v1/gateway/webhooks/stripe"


def worker_env(database_url: str, inkpass: FakeHTTPServer) -> dict[str, str]:
    return {
        **TEST_SECRETS,
        "DATABASE_URL": database_url,
        "INKPASS_INTERNAL_URL": inkpass.url,
        "INKPASS_TIMEOUT_SECONDS": "30",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_STALLED_AFTER_SECONDS": "2",
        "STALLED_SWEEP_SECONDS": "1",
        "WORKER_SHUTDOWN_GRACE_SECONDS": "10",
        "DELIVERY_BACKOFF_BASE_SECONDS": "0.05",
    }


async def post_event(database_url: str, event_id: str) -> uuid.UUID:
    async with client_for(create_app(make_settings(database_url))) as client:
        body = stripe_event("invoice.paid", id=event_id)
        response = await client.post(URL, content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    return uuid.UUID(response.json()["event_id"])


async def status_of(database_url: str, event: uuid.UUID) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT status FROM webhook_events WHERE id = $1", event))
    finally:
        await conn.close()


async def last_error_of(database_url: str, event: uuid.UUID) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        error: str | None = await conn.fetchval(
            "SELECT last_error FROM webhook_deliveries WHERE event_id = $1", event
        )
        return error
    finally:
        await conn.close()


async def wait_for_status(database_url: str, event: uuid.UUID, status: str) -> None:
    async def reached() -> bool:
        return await status_of(database_url, event) == status

    await wait_for(reached, within=30)


async def test_sigkill_mid_delivery_is_retried_by_the_stalled_job_sweep(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    # The first call hangs (the worker dies during it); the retry answers 200.
    inkpass.script(Reply(status=200, delay=30), Reply(status=200))
    event = await post_event(database_url, "evt_sigkill")
    env = worker_env(database_url, inkpass)

    first = start_mimic("worker", env)
    try:
        await inkpass.wait_for_requests(1, within=30)
    finally:
        await asyncio.to_thread(kill, first)
    assert await status_of(database_url, event) == "received"

    health_port = free_port()
    second = start_mimic("worker", {**env, "WORKER_HEALTH_PORT": str(health_port)})
    try:
        await wait_for_status(database_url, event, "delivered")
        # The worker serves its own metrics: what it counted is there.
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"http://127.0.0.1:{health_port}/metrics")).text
    finally:
        output = await asyncio.to_thread(stop, second, signal.SIGTERM)
    assert "retried stalled job" in output
    assert [line for line in scraped.splitlines() if line.startswith("mimic_deliveries_total")] == [
        'mimic_deliveries_total{outcome="success",target="inkpass"} 1.0'
    ]
    keys = [r.headers["idempotency-key"] for r in inkpass.requests]
    assert len(keys) == 2
    assert len(set(keys)) == 1
    # The retry says why it happened.
    assert await last_error_of(database_url, event) == (
        "attempt 1 was interrupted (worker stopped, died or lost the database); retried"
    )


async def test_sigkill_mid_group_delivers_every_delivery_of_the_group(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    # Five events stored by one commit share one job. The worker dies while the first calls
    # hang; the stalled-job sweep gives the group's job to the next worker, which delivers
    # every delivery the group still owns: none lost, each key answered once with success.
    inkpass.script(*[Reply(status=200, delay=30)] * 2)
    settings = make_settings(database_url)
    app = create_app(settings)
    async with live_api(settings, app) as base, httpx.AsyncClient(base_url=base) as http:
        committing = committer(app.state.deps.db, router())
        async with commit_held(database_url, "webhook_events") as watcher:
            bodies = [stripe_event("invoice.paid", id=f"evt_group_{i}") for i in range(6)]
            first = asyncio.create_task(
                http.post(URL, content=bodies[0], headers=stripe_headers(bodies[0]))
            )
            await wait_for(lambda: insert_waits(watcher, "webhook_events"))
            rest = [
                asyncio.create_task(http.post(URL, content=b, headers=stripe_headers(b)))
                for b in bodies[1:]
            ]

            async def queued() -> bool:
                return committing.waiting == 5

            await wait_for(queued)
        answers = [await first, *[await r for r in rest]]
    assert {a.status_code for a in answers} == {200}
    events = [uuid.UUID(a.json()["event_id"]) for a in answers[1:]]
    conn = await asyncpg.connect(database_url)
    try:
        jobs = {
            r["job_id"]
            for r in await conn.fetch(
                "SELECT job_id FROM webhook_deliveries d JOIN webhook_events e "
                "ON e.id = d.event_id WHERE e.id = ANY($1::uuid[])",
                events,
            )
        }
    finally:
        await conn.close()
    assert len(jobs) == 1  # the five share one job
    env = worker_env(database_url, inkpass)
    first_worker = start_mimic("worker", {**env, "WORKER_CONCURRENCY_WEBHOOKS": "2"})
    try:
        await inkpass.wait_for_requests(2, within=30)
    finally:
        await asyncio.to_thread(kill, first_worker)
    second = start_mimic("worker", env)
    try:
        for event in events:
            await wait_for_status(database_url, event, "delivered")
    finally:
        await asyncio.to_thread(stop, second, signal.SIGTERM)
    keys = [r.headers["idempotency-key"] for r in inkpass.requests]
    assert len(set(keys)) == 6  # every delivery, the lone first event's too
    assert len(keys) >= 6


async def test_sigterm_lets_the_in_flight_delivery_finish(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    inkpass.script(Reply(status=200, delay=1.5))
    event = await post_event(database_url, "evt_sigterm")
    worker = start_mimic("worker", worker_env(database_url, inkpass))
    try:
        await inkpass.wait_for_requests(1, within=30)
    finally:
        output = await asyncio.to_thread(stop, worker, signal.SIGTERM)
    assert worker.returncode == 0, output
    assert "Traceback" not in output
    assert await status_of(database_url, event) == "delivered"
    assert len(inkpass.requests) == 1
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM procrastinate_workers") == 0
    finally:
        await conn.close()


async def test_job_past_the_grace_period_is_retried_not_lost(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    # The call outlives WORKER_SHUTDOWN_GRACE_SECONDS: the worker aborts it, and the job
    # must come back for the next worker instead of ending `aborted` for good.
    inkpass.script(Reply(status=200, delay=5), Reply(status=200))
    event = await post_event(database_url, "evt_grace")
    env = {**worker_env(database_url, inkpass), "WORKER_SHUTDOWN_GRACE_SECONDS": "0.5"}
    first = start_mimic("worker", env)
    try:
        await inkpass.wait_for_requests(1, within=30)
    finally:
        output = await asyncio.to_thread(stop, first, signal.SIGTERM)
    assert first.returncode == 0, output
    assert await status_of(database_url, event) == "received"
    # While it waits for the next worker, the delivery says why it is not done.
    assert await last_error_of(database_url, event) == (
        "attempt 1 was cut off (worker shutdown, or an operator's abort)"
    )

    second = start_mimic("worker", env)
    try:
        await wait_for_status(database_url, event, "delivered")
    finally:
        await asyncio.to_thread(stop, second, signal.SIGTERM)
    keys = {r.headers["idempotency-key"] for r in inkpass.requests}
    assert len(inkpass.requests) == 2
    assert len(keys) == 1


async def test_the_worker_metrics_need_the_metrics_key(
    database_url: str, inkpass: FakeHTTPServer
) -> None:
    key = "metrics_test_key_0123456789abcdef0123"
    health_port = free_port()
    env = {
        **worker_env(database_url, inkpass),
        "WORKER_HEALTH_PORT": str(health_port),
        "METRICS_API_KEY": key,
    }
    base = f"http://127.0.0.1:{health_port}"
    worker = start_mimic("worker", env)
    try:

        async def ready() -> bool:
            return await answers_200(f"{base}/readyz")

        await wait_for(ready, within=30)
        async with httpx.AsyncClient(base_url=base) as http:
            refused = await http.get("/metrics")
            allowed = await http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    finally:
        output = await asyncio.to_thread(stop, worker, signal.SIGTERM)
    assert refused.status_code == 401, output
    assert refused.json()["error"] == "unauthorized"
    assert allowed.status_code == 200
    assert 'mimic_queue_jobs{queue="email",status="todo"} 0.0' in allowed.text
    assert key not in output
