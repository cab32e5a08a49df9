"""The resources a request handler or a task uses, opened once per process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx

from mimic.core.circuits import Circuits, Policy
from mimic.core.crypto import Keyring
from mimic.core.db import Database, create_pool
from mimic.core.http import session as outbound_session
from mimic.core.settings import Settings
from mimic.core.slots import KeyedSlots


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Database
    #: One shared client for Resend and Postmark; keys are set per request.
    http: httpx.AsyncClient
    #: One shared client for deliveries to internal services (core.http.post).
    session: aiohttp.ClientSession
    #: Where the admin lists and details read: a replica (DATABASE_READ_URL), else ``db``.
    #: What the request path of a webhook or a send reads and writes stays on ``db``.
    reads: Database
    keyring: Keyring
    #: Provider circuit breakers, shared with every process through Postgres.
    circuits: Circuits
    #: Each tenant's share of this worker's email slots (WORKER_TENANT_EMAIL_SLOTS).
    tenant_slots: KeyedSlots


@contextlib.asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    database = settings.database
    if database.url is None:
        raise ValueError("settings need a database URL (see mimic.core.embedded.resolve_database)")
    pool = await create_pool(
        database.url.get(),
        max_size=database.pool_max_size,
        statement_cache_size=database.statement_cache_size,
    )
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
    session = outbound_session()
    db = Database(pool)
    reads = db
    if database.read_url is not None:
        reads = Database(
            await create_pool(
                database.read_url.get(),
                max_size=database.pool_max_size,
                statement_cache_size=database.statement_cache_size,
            )
        )
    try:
        email = settings.email
        policy = Policy(
            email.circuit_failures, email.circuit_window_seconds, email.circuit_cooldown_seconds
        )
        yield Deps(
            settings=settings,
            db=db,
            http=http,
            session=session,
            reads=reads,
            keyring=Keyring(settings.email.encryption_keys),
            circuits=Circuits(db, policy),
            tenant_slots=KeyedSlots(settings.worker.tenant_email_slots),
        )
    finally:
        await http.aclose()
        await session.close()
        if reads is not db:
            await reads.close()
        await db.close()
