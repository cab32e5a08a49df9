"""``mimic worker``: a procrastinate worker on every Mimic queue, with its resources open."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import procrastinate

from mimic.db import Database, create_pool
from mimic.deps import Deps
from mimic.jobs import build_app
from mimic.settings import Settings


@contextlib.asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url.get(), max_size=settings.db_pool_max_size)
    http = httpx.AsyncClient()
    try:
        yield Deps(settings=settings, db=Database(pool), http=http)
    finally:
        await http.aclose()
        await pool.close()


async def run_worker(
    settings: Settings,
    *,
    app: procrastinate.App | None = None,
    install_signal_handlers: bool = True,
    wait: bool = True,
) -> None:
    """Run until SIGTERM/SIGINT; in-flight jobs get the grace period to finish."""
    app = app or build_app(settings)
    async with open_deps(settings) as deps, app.open_async():
        await app.run_worker_async(
            concurrency=settings.worker_concurrency,
            wait=wait,
            shutdown_graceful_timeout=settings.worker_shutdown_grace_seconds,
            update_heartbeat_interval=settings.worker_heartbeat_seconds,
            stalled_worker_timeout=settings.worker_stalled_after_seconds,
            additional_context={"deps": deps},
            install_signal_handlers=install_signal_handlers,
        )
