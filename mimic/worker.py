"""``mimic worker``: a procrastinate worker on every Mimic queue, with its resources open."""

from __future__ import annotations

import procrastinate

from mimic.deps import open_deps
from mimic.jobs import build_app
from mimic.settings import Settings


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
