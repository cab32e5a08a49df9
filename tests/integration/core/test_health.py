from __future__ import annotations

import logging
import socket

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.deps import open_deps
from mimic.core.health import WorkerState, worker_health_app
from tests.helpers import ADMIN, client_for, live_api, make_settings


async def test_healthz_and_readyz_on_a_current_schema(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "reason": None}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"


async def test_readyz_is_503_when_the_schema_is_not_applied(empty_database_url: str) -> None:
    async with client_for(create_app(make_settings(empty_database_url))) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"].startswith("schema not current: pending 0000_procrastinate")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_readyz_is_503_and_healthz_200_when_the_database_is_down() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing"
    async with client_for(create_app(make_settings(url))) as client:
        assert (await client.get("/healthz")).status_code == 200
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "The database is unavailable; retry later."


async def test_openapi_docs_are_served(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/docs/openapi.json")).json()
    assert "/readyz" in schema["paths"]


async def test_metrics_are_exposed(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "mimic_webhooks_rejected_total" in response.text


METRICS_KEY = "metrics_test_key_0123456789abcdef0123"


async def test_metrics_api_key_guards_the_api_metrics(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, METRICS_API_KEY=METRICS_KEY)
    with caplog.at_level(logging.DEBUG):
        async with client_for(create_app(settings)) as client:
            refused = [
                await client.get("/metrics"),
                await client.get("/metrics", headers={"X-API-Key": METRICS_KEY[:-1]}),
                await client.get("/metrics", headers=ADMIN),  # an admin key is not this key
            ]
            bearer = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}
            )
            header = await client.get("/metrics", headers={"X-API-Key": METRICS_KEY})
    for response in refused:
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert "METRICS_API_KEY" in response.json()["detail"]
        assert METRICS_KEY not in response.text
    for response in (bearer, header):
        assert response.status_code == 200
        assert 'mimic_queue_jobs{queue="email",status="todo"} 0.0' in response.text
    assert METRICS_KEY not in caplog.text


async def test_without_metrics_api_key_metrics_stay_open(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/metrics")).status_code == 200


async def test_the_worker_metrics_are_the_apis(database_url: str) -> None:
    settings = make_settings(database_url, METRICS_API_KEY=METRICS_KEY)
    # Served as the worker serves it: by uvicorn, in the loop that opened its resources.
    async with (
        open_deps(settings) as deps,
        live_api(settings, worker_health_app(WorkerState(), deps)) as url,
        httpx.AsyncClient(base_url=url) as worker,
    ):
        refused = await worker.get("/metrics")
        bearer = await worker.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
        header = await worker.get("/metrics", headers={"X-API-Key": METRICS_KEY})
        health = await worker.get("/healthz")
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "unauthorized",
        "detail": "/metrics needs METRICS_API_KEY (Authorization: Bearer <key> or X-API-Key)",
    }
    for response in (bearer, header):
        assert response.status_code == 200
        assert 'mimic_queue_jobs{queue="webhooks",status="doing"} 0.0' in response.text
        assert 'mimic_queue_oldest_todo_seconds{queue="maintenance"} 0.0' in response.text
    assert health.status_code == 200  # probes need no key
