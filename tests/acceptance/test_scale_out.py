"""Two API processes and two worker processes against one Postgres, duplicates mixed in."""

from __future__ import annotations

import asyncio
import functools
import json
import pathlib
import random
import signal
import uuid

import asyncpg
import httpx
import pytest

from tests.fakes import FakeHTTPServer
from tests.helpers import TEST_SECRETS, answers_200, stripe_event, stripe_headers, wait_for
from tests.procs import free_port, start_mimic, stop

pytestmark = pytest.mark.slow

URL = "/api/v1/gateway/webhooks/stripe"


async def test_two_apis_and_two_workers_store_once_and_deliver_once_each(
    database_url: str, tmp_path: pathlib.Path, inkpass: FakeHTTPServer
) -> None:
    api_ports = [free_port(), free_port()]
    health_port = free_port()
    env = {
        **TEST_SECRETS,
        "DATABASE_URL": database_url,
        "INKPASS_INTERNAL_URL": inkpass.url,
        "MIMIC_LOG_LEVEL": "WARNING",
    }
    apis = [
        start_mimic("api", {**env, "MIMIC_PORT": str(port)}, log=tmp_path / f"api{i}.log")
        for i, port in enumerate(api_ports)
    ]
    workers = start_mimic(
        "worker",
        {**env, "WORKER_HEALTH_PORT": str(health_port)},
        "--processes",
        "2",
        log=tmp_path / "workers.log",
    )
    try:
        for port in api_ports:
            url = f"http://127.0.0.1:{port}/readyz"
            await wait_for(functools.partial(answers_200, url), within=60)

        # 800 distinct events; 200 more requests repeat some of them, to the other API and
        # often at the same moment as the original.
        unique = [stripe_event("invoice.paid", id=f"evt_{uuid.uuid4().hex}") for _ in range(800)]
        bodies = unique + random.Random(7).choices(unique, k=200)
        random.Random(8).shuffle(bodies)
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        for n, body in enumerate(bodies):
            queue.put_nowait((n, body))
        answers: list[tuple[int, str, bool]] = []

        async def client(port: int) -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                while not queue.empty():
                    _, body = queue.get_nowait()
                    response = await http.post(URL, content=body, headers=stripe_headers(body))
                    data = response.json()
                    answers.append((response.status_code, data["event_id"], data["duplicate"]))

        await asyncio.gather(*(client(api_ports[i % 2]) for i in range(16)))
        assert len(answers) == 1000
        assert {status for status, _, _ in answers} == {200}
        assert sum(1 for _, _, duplicate in answers if not duplicate) == 800
        assert len({event for _, event, _ in answers}) == 800

        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM webhook_events") == 800
            deliveries = {
                str(r["id"]) for r in await conn.fetch("SELECT id FROM webhook_deliveries")
            }
            assert len(deliveries) == 800
            # Every delivery is carried by exactly one job (deliveries stored by one commit
            # share a job, which names each of them).
            carried: list[str] = []
            for job in await conn.fetch(
                "SELECT args FROM procrastinate_jobs WHERE queue_name = 'webhooks'"
            ):
                args = json.loads(job["args"])
                carried += args.get("delivery_ids") or [args["delivery_id"]]
            assert sorted(carried) == sorted(deliveries)

            async def all_delivered() -> bool:
                left = await conn.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE status <> 'success'"
                )
                return bool(left == 0)

            await wait_for(all_delivered, within=90)
            # Two worker processes shared the queue (each registers its two procrastinate
            # workers, the webhooks share and the email share, while it runs).
            live_workers = await conn.fetchval("SELECT count(*) FROM procrastinate_workers")
        finally:
            await conn.close()
        keys: dict[str, set[str]] = {}
        for request in inkpass.requests:
            keys.setdefault(request.json()["delivery_id"], set()).add(
                request.headers["idempotency-key"]
            )
        assert keys.keys() == deliveries
        assert all(found == {delivery} for delivery, found in keys.items())
        assert len(inkpass.requests) == 800  # no delivery was called twice
        assert live_workers == 4
    finally:
        for proc in (*apis, workers):
            await asyncio.to_thread(stop, proc, signal.SIGTERM)
    assert workers.returncode == 0, (tmp_path / "workers.log").read_text()[-3000:]
