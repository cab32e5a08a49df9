"""Real Postgres for every test: one migrated template per run, a fresh copy per test.

Postgres comes from TEST_DATABASE_URL if set, else testcontainers when a Docker engine
answers, else the embedded PostgreSQL (what a bare machine has).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.migrate import load_steps, migrate
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer
from tests.helpers import (
    ROOT,
    admin_execute,
    client_for,
    docker_answers,
    make_settings,
    with_database,
)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """For tests that call configure_logging: the root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture
def inkpass() -> Iterator[FakeHTTPServer]:
    """A fake inkpass (a real local HTTP server) that answers 200 unless scripted."""
    with FakeHTTPServer() as server:
        yield server


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    from mimic.core.embedded import start_embedded

    yield start_embedded(str(ROOT / ".mimic" / "test"))


@pytest.fixture(scope="session")
def template_name(server_url: str) -> Iterator[str]:
    name = f"mimic_tpl_{os.getpid()}"
    admin_execute(server_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    asyncio.run(migrate(with_database(server_url, name), load_steps()))
    yield name
    admin_execute(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_counter = itertools.count()


@pytest.fixture
def database_url(server_url: str, template_name: str) -> Iterator[str]:
    name = f"mimic_t_{os.getpid()}_{next(_counter)}"
    admin_execute(server_url, f"CREATE DATABASE {name} TEMPLATE {template_name}")
    yield with_database(server_url, name)
    admin_execute(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    name = f"mimic_e_{os.getpid()}_{next(_counter)}"
    admin_execute(server_url, f"CREATE DATABASE {name}")
    yield with_database(server_url, name)
    admin_execute(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to this test's database, for setup and assertions."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with client_for(create_app(settings)) as c:
        yield c
