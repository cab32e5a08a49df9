"""The worker root: Mimic's procrastinate app, every domain's tasks, the stalled-job sweep.

``PROCRASTINATE_APP=mimic.worker.app`` gives the procrastinate CLI Mimic's app. The app is
built on first attribute access (PEP 562), so importing this module reads no environment.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import procrastinate

from mimic.billing.tasks import blueprint as billing_tasks
from mimic.core.deps import Deps, open_deps
from mimic.core.jobs import QUEUE_MAINTENANCE, deps_of, queries
from mimic.core.settings import Settings
from mimic.email.tasks import blueprint as email_tasks

logger = logging.getLogger(__name__)

SWEEP_TASK = "mimic.tasks.retry_stalled_jobs"

maintenance = procrastinate.Blueprint()


@maintenance.task(name=SWEEP_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
    """Put the jobs of dead workers (stale heartbeat) back in the queue."""
    deps: Deps = deps_of(context)
    stale = deps.settings.worker.stalled_after_seconds
    stalled = await context.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stale)
    retried = 0
    for job in stalled:
        if job.task_name == SWEEP_TASK:
            continue
        # Re-check under the row lock: the job may have finished since it was listed,
        # and procrastinate's retry would also revive a job that has since failed.
        async with deps.db.transaction() as conn:
            if await conn.fetchval(queries["retry_stalled_job"], job.id, stale):
                retried += 1
                logger.warning("retried stalled job %s (%s)", job.id, job.task_name)
    return retried


def sweep_cron(seconds: int) -> str:
    return "* * * * *" if seconds >= 60 else f"* * * * * */{seconds}"


#: Every blueprint of Mimic tasks. Task names are the seed's, unchanged (no namespace).
BLUEPRINTS = (billing_tasks, email_tasks, maintenance)


def build_app(settings: Settings) -> procrastinate.App:
    """The procrastinate app for the worker and the CLI, with every Mimic task."""
    assert settings.database.url is not None, "resolve the database URL first"
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.database.url.get(),
        kwargs={"application_name": "mimic-procrastinate"},
    )
    app = procrastinate.App(connector=connector)
    for blueprint in BLUEPRINTS:
        # An empty namespace keeps the names as they are, so queued jobs still find them.
        app.add_tasks_from(blueprint, namespace="")
    app.periodic(cron=sweep_cron(settings.worker.stalled_sweep_seconds))(retry_stalled_jobs)
    return app


async def run_worker(
    settings: Settings,
    *,
    app: procrastinate.App | None = None,
    install_signal_handlers: bool = True,
    wait: bool = True,
) -> None:
    """Run until SIGTERM/SIGINT; in-flight jobs get the grace period to finish."""
    app = app or build_app(settings)
    worker = settings.worker
    async with open_deps(settings) as deps, app.open_async():
        await app.run_worker_async(
            concurrency=worker.concurrency,
            wait=wait,
            shutdown_graceful_timeout=worker.shutdown_grace_seconds,
            update_heartbeat_interval=worker.heartbeat_seconds,
            stalled_worker_timeout=worker.stalled_after_seconds,
            additional_context={"deps": deps},
            install_signal_handlers=install_signal_handlers,
        )


def __getattr__(name: str) -> Any:
    if name == "app":
        from mimic.core.embedded import resolve_database

        settings = resolve_database(Settings.from_env(os.environ))
        built = build_app(settings)
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
