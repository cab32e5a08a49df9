"""Postgres crashes (`pg_ctl stop -m immediate`) under load and comes back.

Real processes against a private Postgres the test can crash: `mimic api`, `mimic worker`
and a fake inkpass. Nothing acknowledged may be lost; a refused event may be stored only if
its commit was in flight when the server died (Postgres had flushed it and died before it
answered: no client can know); the provider's retry of each refused event is answered 200
and stores it exactly once; and the same worker process carries on once the database is back.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import time
import uuid

import asyncpg
import httpx
import pytest

from mimic.core.migrate import load_steps, migrate
from tests.fakes import FakeHTTPServer
from tests.helpers import TEST_SECRETS, answers_200, stripe_event, stripe_headers, wait_for
from tests.procs import PrivatePostgres, free_port, start_mimic, stop

pytestmark = pytest.mark.slow

URL = "/api/v1/gateway/webhooks/stripe"


async def test_a_postgres_crash_loses_nothing_and_the_worker_carries_on(
    tmp_path: pathlib.Path, inkpass: FakeHTTPServer
) -> None:
    postgres = PrivatePostgres(tmp_path / "pg")
    await migrate(postgres.uri, load_steps())
    api_port, health_port = free_port(), free_port()
    env = {
        **TEST_SECRETS,
        "DATABASE_URL": postgres.uri,
        "MIMIC_PORT": str(api_port),
        "WORKER_HEALTH_PORT": str(health_port),
        "INKPASS_INTERNAL_URL": inkpass.url,
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_STALLED_AFTER_SECONDS": "2",
        "STALLED_SWEEP_SECONDS": "1",
        "WORKER_RECONNECT_MAX_SECONDS": "1",
        "DELIVERY_BACKOFF_BASE_SECONDS": "0.1",
        "DELIVERY_BACKOFF_MAX_SECONDS": "1",
    }
    api = start_mimic("api", env, log=tmp_path / "api.log")
    worker = start_mimic("worker", env, log=tmp_path / "worker.log")
    api_url, worker_ready = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{health_port}/readyz"
    answers: dict[str, int] = {}
    answered_at: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    bodies: dict[str, bytes] = {}
    try:
        await wait_for(lambda: answers_200(f"{api_url}/readyz"), within=60)
        await wait_for(lambda: answers_200(worker_ready), within=60)

        done_sending = asyncio.Event()

        async def send_steadily() -> None:
            async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
                while not done_sending.is_set():
                    event_id = f"evt_{uuid.uuid4().hex}"
                    body = bodies[event_id] = stripe_event("invoice.paid", id=event_id)
                    sent_at[event_id] = time.monotonic()
                    try:
                        response = await http.post(URL, content=body, headers=stripe_headers(body))
                        answers[event_id] = response.status_code
                    except httpx.TransportError:
                        answers[event_id] = 0  # no answer: the provider would retry
                    answered_at[event_id] = time.monotonic()
                    await asyncio.sleep(0.02)

        sending = asyncio.create_task(send_steadily())

        def answered(status: int, since: float) -> int:
            return sum(
                1 for e, s in answers.items() if s == status and answered_at.get(e, 0) > since
            )

        async def acknowledged_since(since: float) -> bool:
            return answered(200, since) >= 20

        await wait_for(lambda: acknowledged_since(0.0), within=30)  # steady traffic first
        crashing_at = time.monotonic()
        await asyncio.to_thread(postgres.crash)
        crashed_at = time.monotonic()

        async def worker_not_ready() -> bool:
            return not await answers_200(worker_ready)

        await wait_for(worker_not_ready, within=15)  # it noticed, and says so

        async def refused_during_outage() -> bool:  # the API met the outage, and said 503
            return answered(503, crashed_at) + answered(0, crashed_at) >= 3

        await wait_for(refused_during_outage, within=15)
        await asyncio.to_thread(postgres.start)
        restarted_at = time.monotonic()
        # Keep sending after the restart: the API must recover too.
        await wait_for(lambda: acknowledged_since(restarted_at), within=30)
        done_sending.set()
        await sending
        await wait_for(lambda: answers_200(worker_ready), within=30)

        statuses = set(answers.values())
        assert statuses <= {200, 503}, f"answers other than 200/503: {statuses}"
        acknowledged = {e for e, s in answers.items() if s == 200}
        refused = {e for e, s in answers.items() if s != 200}
        assert refused, "the crash refused nothing: the test did not test the outage"
        assert len(acknowledged) > 10
        # The API came back by itself too.
        assert any(answered_at[e] > restarted_at for e in acknowledged)

        conn = await asyncpg.connect(postgres.uri)
        try:
            stored = {
                r["event_id"]: r["id"]
                for r in await conn.fetch("SELECT id, event_id FROM webhook_events")
            }
            assert acknowledged <= stored.keys(), "an acknowledged event was lost"
            # One request at a time was in flight, so at most one commit can have been cut
            # off after Postgres made it durable and before it answered.
            in_doubt = refused & stored.keys()
            assert len(in_doubt) <= 1, f"refused events were stored: {len(in_doubt)}"
            for event_id in in_doubt:  # ... and only the one in flight when the server died
                assert sent_at[event_id] <= crashed_at
                assert answered_at[event_id] >= crashing_at

            # The provider retries every refused event: each is answered 200 and stored once;
            # the one in doubt, if any, as a duplicate of the row already stored.
            async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
                for event_id in sorted(refused):
                    body = bodies[event_id]
                    response = await http.post(URL, content=body, headers=stripe_headers(body))
                    assert response.status_code == 200, response.text
                    assert response.json()["duplicate"] is (event_id in in_doubt)
                    if event_id in in_doubt:
                        assert response.json()["event_id"] == str(stored[event_id])
            stored = {
                r["event_id"]: r["id"]
                for r in await conn.fetch("SELECT id, event_id FROM webhook_events")
            }
            assert stored.keys() == acknowledged | refused
            deliveries = await conn.fetch(
                "SELECT d.id, d.job_id, d.event_id FROM webhook_deliveries d"
            )
            assert {d["event_id"] for d in deliveries} == set(stored.values())
            jobs = await conn.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY($1::bigint[])",
                [d["job_id"] for d in deliveries],
            )
            assert jobs == len(deliveries), "a delivery lost its job"

            async def all_delivered() -> bool:
                pending = await conn.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE status <> 'success'"
                )
                return bool(pending == 0)

            await wait_for(all_delivered, within=60)
        finally:
            await conn.close()

        # The one worker process started above, never restarted, delivered everything.
        assert worker.poll() is None, "the worker process exited"
        delivery_ids = {str(d["id"]) for d in deliveries}
        called: dict[str, set[str]] = {}
        for request in inkpass.requests:
            called.setdefault(request.json()["delivery_id"], set()).add(
                request.headers["idempotency-key"]
            )
        assert called.keys() == delivery_ids
        assert all(keys == {delivery} for delivery, keys in called.items())
        log = (tmp_path / "worker.log").read_text()
        assert "database lost" in log
        assert "database back: worker resumed" in log
    finally:
        await asyncio.to_thread(stop, api, signal.SIGTERM)
        await asyncio.to_thread(stop, worker, signal.SIGTERM)
        await asyncio.to_thread(postgres.stop)
        for name in ("api", "worker"):
            print(f"--- {name} ---\n{(tmp_path / f'{name}.log').read_text()[-5000:]}")
        print(json.dumps({s: list(answers.values()).count(s) for s in set(answers.values())}))


async def test_a_worker_started_before_its_database_waits_for_it(tmp_path: pathlib.Path) -> None:
    postgres = PrivatePostgres(tmp_path / "pg")
    await migrate(postgres.uri, load_steps())
    await asyncio.to_thread(postgres.crash)
    health_port = free_port()
    env = {**TEST_SECRETS, "DATABASE_URL": postgres.uri, "WORKER_HEALTH_PORT": str(health_port)}
    worker = start_mimic("worker", env, log=tmp_path / "worker.log")
    try:
        log_file = tmp_path / "worker.log"

        async def waiting() -> bool:  # it has tried, found nothing, and says so
            return "database unavailable at startup" in log_file.read_text()

        await wait_for(waiting, within=30)  # (a loaded machine may take seconds to boot it)
        await asyncio.sleep(1)  # a few more tries
        assert worker.poll() is None, "the worker gave up on a database that was not up yet"
        await asyncio.to_thread(postgres.start)
        await wait_for(lambda: answers_200(f"http://127.0.0.1:{health_port}/readyz"), within=30)
    finally:
        await asyncio.to_thread(stop, worker, signal.SIGTERM)
        await asyncio.to_thread(postgres.stop)
    assert worker.returncode == 0
    log = (tmp_path / "worker.log").read_text()
    assert log.count("database unavailable at startup") == 1  # one line, not one per try
    assert "database answered; starting" in log
