"""The worker root: Mimic's procrastinate app, every domain's tasks, the stalled-job sweep.

``PROCRASTINATE_APP=mimic.worker.app`` gives the procrastinate CLI Mimic's app. The app is
built on first attribute access (PEP 562), so importing this module reads no environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
import uvicorn

from mimic.billing import inkpass
from mimic.billing import tasks as billing_tasks
from mimic.core.deps import Deps, open_deps
from mimic.core.health import WorkerState, worker_health_app
from mimic.core.jobs import (
    QUEUE_EMAIL,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    Backoff,
    deps_of,
    queries,
)
from mimic.core.settings import Settings
from mimic.email import tasks as email_tasks
from mimic.events import tasks as event_tasks

logger = logging.getLogger(__name__)

SWEEP_TASK = "mimic.tasks.retry_stalled_jobs"


async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
    """Put the jobs of dead workers (stale heartbeat) back in the queue."""
    deps: Deps = deps_of(context)
    stale = deps.settings.worker.stalled_after_seconds
    stalled = await context.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stale)
    # This sweep runs every few seconds: its own finished runs are noise in `make jobs`.
    await deps.db.execute(queries["forget_sweeps"], SWEEP_TASK, context.job.id)
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
    if not retried:
        logger.debug("no stalled jobs")
    return retried


REMOVE_OLD_JOBS_TASK = "mimic.tasks.remove_old_jobs"


async def remove_old_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    """Periodic: procrastinate's own deletion of finished jobs (and their events) older than
    JOB_RETENTION_DAYS. (procrastinate's builtin task cannot be periodic as it is: periodic
    jobs get a ``timestamp`` argument it does not take.)"""
    days = deps_of(context).settings.retention.job_days
    if days:
        await context.app.job_manager.delete_old_jobs(
            nb_hours=days * 24, include_failed=True, include_cancelled=True, include_aborted=True
        )


def sweep_cron(seconds: int) -> str:
    return "* * * * *" if seconds >= 60 else f"* * * * * */{seconds}"


def maintenance() -> procrastinate.Blueprint:
    tasks = procrastinate.Blueprint()
    tasks.task(name=SWEEP_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(retry_stalled_jobs)
    tasks.task(name=REMOVE_OLD_JOBS_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)(
        remove_old_jobs
    )
    return tasks


#: Every domain's blueprint, made anew for each app. Task names are the seed's, unchanged.
BLUEPRINTS = (
    billing_tasks.blueprint,
    email_tasks.blueprint,
    event_tasks.blueprint,
    maintenance,
)
#: Periodic jobs: retention hourly (at different minutes); resumed deliveries every minute.
PERIODIC = {
    REMOVE_OLD_JOBS_TASK: "7 * * * *",
    event_tasks.PRUNE_TASK: "17 * * * *",
    # Every minute: paused deliveries of destinations resumed meanwhile (see its docstring).
    event_tasks.RESUME_TASK: "* * * * *",
    email_tasks.PURGE_TASK: "27 * * * *",
    email_tasks.PRUNE_NOTIFICATIONS_TASK: "37 * * * *",
}


def build_app(settings: Settings) -> procrastinate.App:
    """The procrastinate app for the worker and the CLI, with every Mimic task."""
    assert settings.database.url is not None, "resolve the database URL first"
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.database.url.get(),
        kwargs={"application_name": "mimic-procrastinate", **LIBPQ_TIMEOUTS},
    )
    app = procrastinate.App(connector=connector)
    inkpass.register()
    for blueprint in BLUEPRINTS:
        # An empty namespace keeps the names as they are, so queued jobs still find them.
        app.add_tasks_from(blueprint(), namespace="")
    sweep = app.tasks[SWEEP_TASK]
    app.periodic(cron=sweep_cron(settings.worker.stalled_sweep_seconds))(sweep)
    for name, cron in PERIODIC.items():
        app.periodic(cron=cron)(app.tasks[name])
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_health(settings: Settings, state: WorkerState, deps: Deps) -> AsyncIterator[None]:
    """/healthz, /readyz and /metrics on WORKER_HEALTH_PORT (0: none)."""
    port = settings.worker.health_port
    if port == 0:
        yield
        return
    host = settings.worker.health_host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # Jobs matter more than the health endpoint: run without it, and say so once.
        logger.warning(
            "worker health endpoint not served: %s:%d is busy (%s); set WORKER_HEALTH_PORT",
            host,
            port,
            exc.strerror,
        )
        yield
        return
    config = uvicorn.Config(
        worker_health_app(state, deps), log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()


def _describe(exc: BaseException) -> str:
    """One line for the log: the error's type and first line, no traceback."""
    cause = exc.__cause__ or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


async def _database_answers(dsn: str) -> bool:
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, **LIBPQ_TIMEOUTS)
    except (psycopg.Error, OSError):
        return False
    try:
        await conn.execute("SELECT 1")
    except (psycopg.Error, OSError):
        return False
    finally:
        await conn.close()
    return True


async def _wait_for_database(settings: Settings, stop: asyncio.Event, failures: int) -> None:
    """Probe with backoff (jittered, capped) until the database answers or a stop arrives.

    ``failures`` counts the worker's recent failures: one that fails again at once, while
    the database answers (a read-only standby, a bug), still waits longer each time.
    """
    assert settings.database.url is not None
    backoff = Backoff(base=0.5, cap=settings.worker.reconnect_max_seconds)
    if failures > 1:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=backoff.delay(failures - 1))
    while not stop.is_set():
        if await _database_answers(settings.database.url.get()):
            return
        delay = backoff.delay(failures)
        failures += 1
        logger.debug("database still away; next attempt in %.1f s", delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


#: A dropped network (not a refused connection) must also end in an error, within seconds,
#: not after TCP gives up (minutes): connect timeout, keepalives, unacknowledged-send limit.
LIBPQ_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def job_pool(dsn: str, *, size: int) -> psycopg_pool.AsyncConnectionPool:
    """procrastinate's pool, tuned: autocommit (its queries are single statements, so no
    BEGIN/COMMIT round trips) and no health check on every checkout (one round trip per
    query). A connection broken by an outage fails its job, and the worker starts over."""
    return psycopg_pool.AsyncConnectionPool(
        dsn,
        open=False,
        min_size=1,
        max_size=size,
        kwargs={"application_name": "mimic-procrastinate", **LIBPQ_TIMEOUTS},
        configure=_autocommit,
        # Waiting for a connection longer than this means the database is gone: give up
        # soon, so the worker notices (and says so) instead of hanging for psycopg's 30 s.
        timeout=5,
    )


async def _run_connected(
    app: procrastinate.App,
    settings: Settings,
    deps: Deps,
    stop: asyncio.Event,
    state: WorkerState,
    *,
    wait: bool,
) -> bool:
    """Run procrastinate's workers on a fresh pool until a stop (True) or a failure (False).

    Two procrastinate workers share the process and the pool, each with its own slots: one
    for the webhooks and maintenance queues, one for email, so deliveries to internal
    services never wait behind mail (however slow a tenant's mail server is)."""
    assert settings.database.url is not None
    worker = settings.worker
    pool = job_pool(
        settings.database.url.get(), size=worker.concurrency_webhooks + worker.concurrency_email + 4
    )
    connector = procrastinate.PsycopgConnector(conninfo=settings.database.url.get())
    shares = {
        "webhooks": ([QUEUE_WEBHOOKS, QUEUE_MAINTENANCE], worker.concurrency_webhooks),
        "email": ([QUEUE_EMAIL], worker.concurrency_email),
    }
    try:
        await pool.open(wait=True, timeout=10)
        state.reason = None  # connected: ready
        with app.replace_connector(connector):
            async with app.open_async(pool=pool):
                runs = {
                    asyncio.create_task(
                        app.run_worker_async(
                            queues=queues,
                            name=f"mimic-{share}",
                            concurrency=concurrency,
                            wait=wait,
                            fetch_job_polling_interval=worker.poll_seconds,
                            shutdown_graceful_timeout=worker.shutdown_grace_seconds,
                            update_heartbeat_interval=worker.heartbeat_seconds,
                            stalled_worker_timeout=worker.stalled_after_seconds,
                            additional_context={"deps": deps},
                            install_signal_handlers=False,
                        ),
                        name=f"procrastinate worker ({share})",
                    )
                    for share, (queues, concurrency) in shares.items()
                }
                stopping = asyncio.create_task(stop.wait())
                try:
                    if wait:  # until a stop, or the first run to end (a failure)
                        await asyncio.wait({*runs, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    else:  # drain: both queues empty
                        await asyncio.wait(runs)
                except asyncio.CancelledError:
                    # Cancelled from outside: stop procrastinate gracefully, then go.
                    stopping.cancel()
                    await _cancel_all(runs)
                    raise
                stopping.cancel()
                ended = [run for run in runs if run.done()]
                # Graceful: no new jobs; in-flight ones get the grace period, then are cut
                # off and retried (see job_body).
                await _cancel_all(runs)
                for run in ended:
                    run.result()  # a failure raises here
                # Stopped, or drained (wait=False); else a run ended by itself: procrastinate
                # stopped after one of its side tasks (listener, heartbeat) lost the database.
                return stop.is_set() or not wait or not ended
    finally:
        with contextlib.suppress(Exception):
            await pool.close(timeout=5)


async def _cancel_all(runs: set[asyncio.Task[None]]) -> None:
    for run in runs:
        run.cancel()
    for run in runs:
        with contextlib.suppress(asyncio.CancelledError):
            await run


async def run_worker(
    settings: Settings,
    *,
    app: procrastinate.App | None = None,
    install_signal_handlers: bool = True,
    wait: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), riding out database outages of any length.

    While the database is away the process stays up, /readyz answers 503 with the reason,
    and one line is logged per change (lost, back); in between it reconnects with backoff.
    """
    app = app or build_app(settings)
    stop = stop or asyncio.Event()
    state = WorkerState()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with open_deps(settings) as deps, serve_health(settings, state, deps):
            lost, failures = False, 0
            while not stop.is_set():
                started = loop.time()
                try:
                    if lost:
                        logger.warning("database back: worker resumed")
                        lost = False
                    if await _run_connected(app, settings, deps, stop, state, wait=wait):
                        break
                    reason = "the worker lost its database connection"
                except Exception as exc:
                    if stop.is_set():
                        logger.warning("worker stopped with an error: %s", _describe(exc))
                        break
                    reason = _describe(exc)
                state.reason = f"database unavailable: {reason}"
                lost = True
                # A run that lasted a while was a real recovery: count failures afresh.
                failures = 1 if loop.time() - started > 60 else failures + 1
                logger.error("database lost (%s); worker paused, reconnecting", reason)
                await _wait_for_database(settings, stop, failures)
    finally:
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def __getattr__(name: str) -> Any:
    if name == "app":
        from mimic.core.embedded import resolve_local

        settings = resolve_local(Settings.from_env(os.environ))
        built = build_app(settings)
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
