from __future__ import annotations

import socket

from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from tests.helpers import client_for, make_settings


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
