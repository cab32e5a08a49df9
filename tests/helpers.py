"""Helpers for tests: settings, clients, a real worker, waits, signed Stripe events.

Fixtures live in ``conftest.py``; test modules import these by name from ``tests.helpers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import socket
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import procrastinate
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from stripe import WebhookSignature

from mimic.app import create_app
from mimic.core.deps import open_deps
from mimic.core.keys import create_key
from mimic.core.settings import Settings
from mimic.worker import build_app, run_worker

ROOT = pathlib.Path(__file__).resolve().parent.parent

TEST_SECRETS = {
    "STRIPE_WEBHOOK_SECRET": "whsec_test_stripe_0123456789abcdef",
    "RESEND_WEBHOOK_SECRET": "whsec_dGVzdHJlc2VuZHNlY3JldDAxMjM0NTY3ODk=",
    "MIMIC_SERVICE_API_KEY": "svc_test_key_0123456789abcdef0123456789",
    "MIMIC_API_KEYS": "admin_test_key_0123456789abcdef0123",
    "POSTMARK_WEBHOOK_SECRET": "pm-hook-secret-0123456789abcdef0123456",
    "STRIPE_SECRET_KEY": "sk_test_0123456789abcdef",
    "MIMIC_ENCRYPTION_KEYS": "k1:" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
}


#: Headers of an admin key (MIMIC_API_KEYS).
ADMIN = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def docker_answers() -> bool:
    """Is a Docker engine listening? (Probed with a plain socket: docker-py's own probe
    leaks its socket when no engine is there.)"""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(host.removeprefix("unix://"))
        else:
            parts = urllib.parse.urlsplit(host)
            with socket.create_connection((parts.hostname or "localhost", parts.port or 2375), 2):
                pass
    except OSError:
        return False
    return True


def admin_execute(server: str, *statements: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


async def answers_200(url: str) -> bool:
    """Does ``url`` answer 200 right now? (For polling a real process's health endpoint.)"""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def make_settings(database_url: str | None, **overrides: str) -> Settings:
    env = {
        **TEST_SECRETS,
        "MIMIC_ENV": "dev",
        "DELIVERY_BACKOFF_BASE_SECONDS": "0.05",
        "DELIVERY_BACKOFF_MAX_SECONDS": "0.5",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_STALLED_AFTER_SECONDS": "2",
        "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
        "STALLED_SWEEP_SECONDS": "1",
        "INKPASS_INTERNAL_URL": "http://127.0.0.1:9",
        "WORKER_HEALTH_PORT": "0",
        "WORKER_POLL_SECONDS": "0.1",
        # No send rate limits unless a test sets one (test_failover.py and test_fairness.py do).
        "RESEND_RATE_PER_SECOND": "0",
        "POSTMARK_RATE_PER_SECOND": "0",
        **overrides,
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return Settings.from_env(env)


async def new_key(settings: Settings, tenant: str) -> str:
    """A new tenant key for ``tenant`` (as `mimic keys create --tenant` makes one)."""
    async with open_deps(settings) as deps:
        _, key = await create_key(deps.db, tenant, "test", by="test")
    return key


def dev_mail_settings(database_url: str, smtp_port: int, **overrides: str) -> Settings:
    """Settings that send through the dev provider to a local SMTP server (an SmtpSink)."""
    return make_settings(
        database_url,
        EMAIL_PROVIDER="dev",
        DEV_SMTP_HOST="127.0.0.1",
        DEV_SMTP_PORT=str(smtp_port),
        **overrides,
    )


@contextlib.asynccontextmanager
async def client_for(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield client


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, app: procrastinate.App | None = None
) -> AsyncIterator[procrastinate.App]:
    """A real procrastinate worker in this event loop, stopped (gracefully) on exit."""
    app = app or build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(settings, app=app, install_signal_handlers=False, stop=stop)
    )
    try:
        yield app
    finally:
        stop.set()  # as SIGTERM would: graceful
        await task


async def wait_for_value(
    db: asyncpg.Connection,
    query: str,
    *args: Any,
    until: Callable[[Any], bool],
    within: float = 10.0,
) -> Any:
    """Poll one value from the database until ``until(value)`` holds; return that value."""
    seen: list[Any] = []

    async def holds() -> bool:
        seen.append(await db.fetchval(query, *args))
        return until(seen[-1])

    await wait_for(holds, within)
    return seen[-1]


async def wait_for(predicate: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll an async predicate until it holds; fail the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def live_api(settings: Settings, app: Litestar | None = None) -> AsyncIterator[str]:
    """The real app (``app``, else one built from ``settings``) behind a real uvicorn server
    on a free loopback port."""
    import uvicorn

    config = uvicorn.Config(
        app or create_app(settings), host="127.0.0.1", port=0, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def stripe_event(event_type: str = "customer.subscription.created", **fields: Any) -> bytes:
    """A Stripe-shaped event body."""
    event = {
        "id": fields.pop("id", f"evt_{uuid.uuid4().hex[:24]}"),
        "object": "event",
        "type": event_type,
        "created": 1_790_000_000,
        "livemode": False,
        "data": {"object": fields.pop("obj", {"id": "sub_123", "object": "subscription"})},
        **fields,
    }
    return json.dumps(event).encode()


def stripe_headers(
    body: bytes, *, secret: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    header = WebhookSignature.generate_signature_header(
        body.decode(),
        secret or TEST_SECRETS["STRIPE_WEBHOOK_SECRET"],
        timestamp=timestamp if timestamp is not None else int(time.time()),
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


async def table_counts(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("webhook_events", "webhook_deliveries", "procrastinate_jobs")
        }
    finally:
        await conn.close()


def group_commit_sizes(writer: str) -> tuple[float, float]:
    """(transactions, items) counted by mimic_group_commit_size{writer} so far."""
    from prometheus_client import REGISTRY

    labels = {"writer": writer}
    count = REGISTRY.get_sample_value("mimic_group_commit_size_count", labels) or 0.0
    total = REGISTRY.get_sample_value("mimic_group_commit_size_sum", labels) or 0.0
    return count, total


@contextlib.asynccontextmanager
async def commit_held(database_url: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """Inside, a SHARE lock on ``table`` holds every INSERT into it (so a group commit's
    statement is in flight and later items queue); leaving releases them. Yields a spare
    connection for watching (see :func:`insert_waits`)."""
    blocker = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f"LOCK TABLE {table} IN SHARE MODE")
        try:
            yield watcher
        finally:
            await tx.rollback()
    finally:
        await blocker.close()
        await watcher.close()


async def insert_waits(conn: asyncpg.Connection, table: str) -> bool:
    """An INSERT into ``table`` is waiting on a lock."""
    waiting = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
        f"%INSERT INTO {table}%",
    )
    return bool(waiting)
